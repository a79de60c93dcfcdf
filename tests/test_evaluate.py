"""`facemend evaluate` end to end on six real CelebA faces (3 identities x 2) at 64 px."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from facemend.commands import evaluate as cmd
from facemend.config import EvalConfig
from facemend.evaluation import evaluate
from facemend.io import load_rgb

RES = 64


FIXTURES = Path(__file__).resolve().parent / "fixtures"
# 3 identities with 2 faces each, from the shipped test faces (their READMEs: sources, licence)
CHOSEN = [("faces/john2_00.png", "kit_harington"), ("faces/kit_with_rose_00.png", "kit_harington"),
          ("faces/obama1_00.png", "barack_obama"), ("faces/obama_and_biden_01.png", "barack_obama"),
          ("faces/obama_and_biden_02.png", "joe_biden"), ("identities/biden_00.png", "joe_biden")]


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> tuple[Path, Path]:
    """A data folder of symlinks to 6 shipped test faces (3 identities, 2 each) and labels.csv."""
    root = tmp_path_factory.mktemp("faces")
    data = root / "data"
    data.mkdir()
    for rel, _ in CHOSEN:
        (data / Path(rel).name).symlink_to(FIXTURES / rel)
    labels = root / "labels.csv"
    with labels.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "identity", "extra"])
        w.writerows([[Path(rel).name, ident, "ignored"] for rel, ident in CHOSEN])
    return data, labels


def _cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    return cmd.run(p.parse_args(argv))


def _run_cli(data: Path, labels: Path, out: Path, method: str = "bicubic") -> dict:
    rc = _cli(["--data", str(data), "--identities", str(labels), "--method", method,
               "--tasks", "bfr,sr8,sr16", "--out", str(out), "--resolution", str(RES),
               "--set", "eval.grid_images=3", "--no-progress"])
    assert rc == 0
    return json.loads((out / "results.json").read_text())


def _without_timestamp(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if '"timestamp"' not in line)


def test_bicubic_run_writes_everything_and_is_reproducible(faces, tmp_path, capsys):
    data, labels = faces
    res = _run_cli(data, labels, tmp_path / "a")
    for name in ["results.json", "results.md", "fig7a.png", "fig7b.png", "grid_bfr.png",
                 "grid_sr8.png", "grid_sr16.png", "testset/manifest.json"]:
        assert (tmp_path / "a" / name).is_file(), name
    for kind in ["hq", "bfr", "sr8", "sr8_small", "sr16", "sr16_small"]:
        assert len(list((tmp_path / "a" / "testset" / kind).glob("*.png"))) == 6, kind
    small = next((tmp_path / "a" / "testset" / "sr16_small").glob("*.png"))
    assert load_rgb(small).shape == (RES // 16, RES // 16, 3)
    manifest = json.loads((tmp_path / "a" / "testset" / "manifest.json").read_text())
    bfr = [v for k, v in manifest["files"].items() if k.startswith("bfr/")]
    assert all("sha256" in v and "sigma" in v["params"] for v in bfr)
    assert set(res["tasks"]) == {"bfr", "sr8", "sr16"}
    for t in res["tasks"].values():
        assert 10 < t["psnr"] < 40 and 0 < t["ssim"] < 1 and 0 <= t["iprecision"] <= 1
        assert set(t["ipr_vs_k"]) == {"1", "2", "3", "4", "5"}
        assert t["lpips"] is None or t["lpips"] > 0
    assert res["protocol"]["k"] == 4 and "torch" in res["protocol"]["versions"]
    grid = load_rgb(tmp_path / "a" / "grid_bfr.png")
    assert grid.shape == (3 * RES, 3 * RES, 3)
    assert "| bicubic |" in (tmp_path / "a" / "results.md").read_text()
    # A second run (fresh cache) gives byte-identical results apart from the timestamp.
    _run_cli(data, labels, tmp_path / "b")
    assert (_without_timestamp(tmp_path / "a" / "results.json")
            == _without_timestamp(tmp_path / "b" / "results.json"))
    # compare mode merges runs.
    capsys.readouterr()
    assert _cli(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    md = capsys.readouterr().out
    assert "bicubic (a)" in md and "bicubic (b)" in md
    assert _cli(["compare", str(tmp_path / "missing")]) == 1


def test_cache_is_reused_then_rebuilt_when_tampered(faces, tmp_path):
    data, labels = faces
    cache = tmp_path / "cache"
    cfg = EvalConfig(resolution=RES, tasks=("bfr",))
    evaluate(data, tmp_path / "r1", "identity", cache=cache, cfg=cfg, progress=False)
    manifest = cache / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    evaluate(data, tmp_path / "r2", "identity", cache=cache, cfg=cfg, progress=False)
    assert manifest.stat().st_mtime_ns == stamp  # reused
    victim = next((cache / "bfr").glob("*.png"))
    victim.write_bytes(b"not a png")
    res = evaluate(data, tmp_path / "r3", "identity", cache=cache, cfg=cfg, progress=False)
    assert manifest.stat().st_mtime_ns != stamp and load_rgb(victim).shape == (RES, RES, 3)
    assert "iprecision" in res["notes"] and res["tasks"]["bfr"]["iprecision"] is None


def test_oracle_is_perfect_and_identity_is_worse(faces, tmp_path):
    data, labels = faces
    cache = tmp_path / "cache"

    def oracle(task, inputs, smalls, names):
        return [load_rgb(cache / "hq" / n) for n in names]

    cfg = EvalConfig(resolution=RES)
    best = evaluate(data, tmp_path / "oracle", oracle, identities=labels, cfg=cfg, cache=cache,
                    method_name="oracle", progress=False)
    ident = evaluate(data, tmp_path / "identity", "identity", identities=labels, cfg=cfg,
                     cache=cache, progress=False)
    saved = json.loads((tmp_path / "oracle" / "results.json").read_text())
    for task in ("bfr", "sr8", "sr16"):
        b, i = best["tasks"][task], ident["tasks"][task]
        assert b["psnr"] == float("inf") and saved["tasks"][task]["psnr"] == "inf"
        assert b["ssim"] == pytest.approx(1.0) and abs(b["fd_dlib"]) < 1e-6
        assert b["iprecision"] == 1.0 and b["irecall"] == 1.0
        assert b["detail"] == pytest.approx(1.0) and b["id_same"] == 1.0  # dlib: below 0.6
        assert np.isfinite(i["psnr"]) and i["ssim"] < 1.0 and i["fd_dlib"] > 1e-3
        assert i["iprecision"] + i["irecall"] <= 2.0
    assert any(ident["tasks"][t]["iprecision"] < 1 or ident["tasks"][t]["irecall"] < 1
               for t in ("sr8", "sr16"))
    assert ident["tasks"]["sr16"]["detail"] < 0.2  # an upsampled 32 px face has no fine detail
    assert "| Detail" not in saved and "Detail→1" in (tmp_path / "identity" / "results.md"
                                                      ).read_text()


def test_cli_errors_are_one_line(faces, tmp_path, capsys):
    data, _ = faces
    assert _cli(["--out", str(tmp_path)]) == 2
    assert _cli(["--data", str(data), "--out", str(tmp_path), "--set", "eval.nope=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err
    assert _cli(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert "data folder not found" in err and "\n" not in err


def test_model_method_without_weights_uses_the_bundled_model():
    from facemend.evaluation.methods import make_restorer
    from facemend.models.pretrained import find_default_weights

    _, desc = make_restorer("model")
    assert find_default_weights().name in desc


def test_same_identity_rate_needs_the_extractors_threshold(faces, tmp_path):
    data, _ = faces

    def colour(images):  # an embedder with no notion of "same person"
        return np.stack([np.asarray(i, np.float64).mean(axis=(0, 1)) / 255 for i in images])

    cfg = EvalConfig(resolution=RES, tasks=("bfr",))
    res = evaluate(data, tmp_path / "c", "identity", cfg=cfg, embedder=colour,
                   embedder_name="mean colour", progress=False)
    assert res["tasks"]["bfr"]["id_same"] is None
    assert res["protocol"]["id_same"].startswith("not computed")


def test_model_method_runs_the_trained_noise_as_restore_does(tmp_path):
    import torch

    from facemend.evaluation.methods import make_restorer
    from facemend.inference.restore import model_restorer
    from facemend.models.pretrained import from_pretrained, save_pretrained

    G = from_pretrained().eval()
    with torch.no_grad():  # make the noise strong enough to show in uint8
        for name, p in G.named_parameters():
            if name.endswith("strength"):
                p.fill_(0.5)
    save_pretrained(G, tmp_path / "w")
    rng = np.random.default_rng(0)
    H = G.cfg.resolution
    inputs = [rng.integers(0, 256, (H, H, 3), dtype=np.uint8) for _ in range(3)]
    x = torch.from_numpy(np.stack(inputs)).permute(0, 3, 1, 2).float() / 127.5 - 1

    def run(**kw) -> np.ndarray:
        restore, desc = make_restorer("model", tmp_path / "w", batch_size=2, **kw)
        assert f"noise_scale={kw.get('noise_scale', 1):g}" in desc
        return np.stack(restore("bfr", inputs, inputs, ["a", "b", "c"]))

    def expected(noise_scale: float, seed: int) -> np.ndarray:
        forward = model_restorer(G, noise_scale=noise_scale, seed=seed)
        y = torch.cat([forward(x[:2]), forward(x[2:])])  # the same batches, one generator
        return ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    default = run()
    np.testing.assert_array_equal(default, expected(1.0, 0))  # restore's default: noise on
    np.testing.assert_array_equal(run(noise_scale=0.0), expected(0.0, 0))
    assert np.abs(default.astype(int) - run(noise_scale=0.0)).max() > 0
    np.testing.assert_array_equal(run(seed=3), expected(1.0, 3))


def test_compare_grid_shows_input_each_run_and_ground_truth(faces, tmp_path):
    from facemend.evaluation import compare

    data, _ = faces
    cache = tmp_path / "cache"
    cfg = EvalConfig(resolution=RES, tasks=("bfr", "sr8"), grid_images=2)

    def inverted(task, inputs, smalls, names):
        return [255 - x for x in inputs]

    evaluate(data, tmp_path / "a", "identity", cache=cache, cfg=cfg, progress=False,
             save_outputs=True)
    evaluate(data, tmp_path / "b", inverted, cache=cache, cfg=cfg, progress=False,
             save_outputs=True)
    compare([tmp_path / "a", tmp_path / "b"], tmp_path / "c")
    for task in ("bfr", "sr8"):
        grid = load_rgb(tmp_path / "c" / f"compare_grid_{task}.png")
        n = len(list((cache / task).glob("*.png")))
        assert grid.shape == (min(n, 6) * RES, 4 * RES, 3)
        first = sorted(p.name for p in (cache / task).glob("*.png"))[0]
        tiles = [grid[:RES, k * RES:(k + 1) * RES] for k in range(4)]
        ident = load_rgb(tmp_path / "a" / "outputs" / task / first)
        np.testing.assert_array_equal(tiles[1], ident)
        np.testing.assert_array_equal(tiles[2], 255 - ident)
        np.testing.assert_array_equal(tiles[3], load_rgb(cache / "hq" / first))
        if task == "bfr":
            np.testing.assert_array_equal(tiles[0], load_rgb(cache / "bfr" / first))
    # runs without saved outputs get the table and no grid
    evaluate(data, tmp_path / "d", "identity", cache=cache, cfg=cfg, progress=False)
    compare([tmp_path / "a", tmp_path / "d"], tmp_path / "e")
    assert not list((tmp_path / "e").glob("compare_grid_*"))
