"""The training loop: learns, resumes exactly, and runs under torchrun (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from facemend.cli import main
from facemend.config import RunConfig, load_config
from facemend.data import FaceFolder
from facemend.models.generator import Generator
from facemend.models.pretrained import WeightsError, from_pretrained
from facemend.training.checkpoint import CheckpointError, TrainingState, load_checkpoint
from facemend.training.loop import train

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny-32.yaml"
FAST = ["train.face_perceptual_weight=0", "train.identity_weight=0", "train.log_every=1",
        "train.sample_every=1000", "train.ckpt_every=1000"]


def cfg_with(*overrides: str) -> RunConfig:
    return load_config(RunConfig, TINY, [*FAST, *overrides])


def test_l1_on_a_fixed_batch_goes_down(faces: Path, tmp_path: Path) -> None:
    cfg = cfg_with("train.steps=30", "train.alpha=0", "train.lr_g=0.005",
                   "train.ema_half_life_images=1")
    final = train(cfg, [str(faces)], tmp_path / "run", progress=False)
    data = FaceFolder(str(faces), 32, seed=123)
    batch = [data[i] for i in range(8)]
    x = torch.stack([b["lq"] for b in batch])
    y = torch.stack([b["hq"] for b in batch])
    torch.manual_seed(cfg.train.seed)
    untrained = Generator(cfg.model).eval()
    trained = from_pretrained(final)
    with torch.no_grad():
        before = (untrained(x, noise_scale=0) - y).abs().mean().item()
        after = (trained(x, noise_scale=0) - y).abs().mean().item()
    assert after < 0.7 * before, (before, after)
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("val_psnr" in r for r in log) and (tmp_path / "run" / "loss_curves.png").is_file()
    assert list((tmp_path / "run" / "samples").glob("step_*.png"))


def test_straight_run_equals_interrupted_and_resumed(faces: Path, tmp_path: Path) -> None:
    cfg = cfg_with("train.steps=6", "train.face_perceptual_weight=0.1")
    train(cfg, [str(faces)], tmp_path / "a", progress=False)
    train(cfg, [str(faces)], tmp_path / "b", progress=False, stop_at=3)
    assert not (tmp_path / "b" / "final").exists()
    train(cfg, [str(faces)], tmp_path / "b", progress=False, resume=True)
    a = load_file(tmp_path / "a" / "checkpoints" / "latest.safetensors")
    b = load_file(tmp_path / "b" / "checkpoints" / "latest.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        if k != "rng/torch":
            assert torch.equal(a[k], b[k]), k
    with pytest.raises(FileExistsError):
        train(cfg, [str(faces)], tmp_path / "a", progress=False)
    # --export-ema of the interrupted-and-resumed run equals the straight run's final weights
    assert main(["train", "--out", str(tmp_path / "b"), "--export-ema", str(tmp_path / "e")]) == 0
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(from_pretrained(tmp_path / "e")(x, noise_scale=0),
                               from_pretrained(tmp_path / "a" / "final")(x, noise_scale=0),
                               atol=0, rtol=0)


def test_adversarial_warm_up_leaves_d_untouched_until_its_step(faces: Path, tmp_path: Path) -> None:
    cfg = cfg_with("train.steps=4", "train.alpha=0.1", "train.adv_start_step=2")
    plain = cfg_with("train.steps=4", "train.alpha=0")
    train(cfg, [str(faces)], tmp_path / "warm", progress=False, stop_at=2)
    train(plain, [str(faces)], tmp_path / "plain", progress=False, stop_at=2)
    a = load_file(tmp_path / "warm" / "checkpoints" / "latest.safetensors")
    b = load_file(tmp_path / "plain" / "checkpoints" / "latest.safetensors")
    for k in a:  # the first 2 steps are the alpha = 0 run exactly (same G, D never stepped)
        if k.startswith(("G", "D")):
            assert torch.equal(a[k], b[k]), k
    train(cfg, [str(faces)], tmp_path / "warm", progress=False, resume=True)
    c = load_file(tmp_path / "warm" / "checkpoints" / "latest.safetensors")
    assert any(not torch.equal(c[k], a[k]) for k in a if k.startswith("D"))
    log = [json.loads(ln) for ln in (tmp_path / "warm" / "log.jsonl").read_text().splitlines()]
    adv = {r["step"]: "loss_adv" in r and "loss_d" in r for r in log if "loss_l1" in r}
    assert adv == {1: False, 2: False, 3: True, 4: True}


# minutes of inductor compilation; covered by benchmarks/train_step.py --set train.compile=true
@pytest.mark.slow
def test_compiled_training_matches_eager_closely(faces: Path, tmp_path: Path) -> None:
    eager = cfg_with("train.steps=3", "train.alpha=0.1")
    compiled = cfg_with("train.steps=3", "train.alpha=0.1", "train.compile=true")
    train(eager, [str(faces)], tmp_path / "e", progress=False)
    train(compiled, [str(faces)], tmp_path / "c", progress=False)
    a = load_file(tmp_path / "e" / "checkpoints" / "latest.safetensors")
    b = load_file(tmp_path / "c" / "checkpoints" / "latest.safetensors")
    logs = [[json.loads(ln) for ln in (tmp_path / r / "log.jsonl").read_text().splitlines()]
            for r in ("e", "c")]
    first = [next(r for r in log if r.get("step") == 1) for log in logs]
    for name in ("loss_l1", "loss_adv", "loss_d", "loss_vq"):  # same weights, data and noise
        assert abs(first[0][name] - first[1][name]) <= 1e-3 * abs(first[0][name]) + 1e-5, name
    keys = [k for k in a if k.startswith(("G/", "D/", "G.", "D."))]
    assert keys
    # Adam moves a weight by at most ~lr per step, whatever its gradient's size, so rounding
    # differences may flip tiny gradients' signs: bound the drift by 2 * lr * steps
    bound = 2 * max(eager.train.lr_g, eager.train.lr_d) * eager.train.steps
    for k in keys:
        if a[k].is_floating_point():
            assert (a[k] - b[k]).abs().max().item() <= bound, k
        else:
            assert torch.equal(a[k], b[k]), k


def test_truncated_checkpoint_is_a_clear_error(faces: Path, tmp_path: Path) -> None:
    cfg = cfg_with("train.steps=1")
    train(cfg, [str(faces)], tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / "checkpoints" / "latest.safetensors"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    state = TrainingState(0, 0, {"G": Generator(cfg.model)}, {}, {})
    with pytest.raises(CheckpointError, match="latest.safetensors"):
        load_checkpoint(ckpt, state)


def test_torchrun_two_cpu_processes(faces: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", "-m", "facemend", "train", "--config", str(TINY),
           "--data", str(faces), "--out", str(out), "--no-progress", "--threads", "1",
           "--device", "cpu", *[a for s in [*FAST, "train.steps=3", "train.batch_size=2"]
                               for a in ("--set", s)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    sync = [r for r in log if "ranks_in_sync" in r]
    assert sync and sync[-1]["ranks_in_sync"] is True and sync[-1]["world"] == 2
    assert (out / "final" / "model.safetensors").is_file()
    # 3 steps x 2 processes x batch 2
    assert max(r.get("images", 0) for r in log) == 12


def test_lr_factor_known_values() -> None:
    from facemend.training.schedule import lr_factor

    # steps 0..1000; the decay runs from step 400 to the last step, 1000
    assert lr_factor(500, 1001, 0, 0.1) == 1.0  # no decay configured
    assert lr_factor(399, 1001, 400, 0.1) == 1.0
    assert lr_factor(400, 1001, 400, 0.1) == pytest.approx(1.0)
    assert lr_factor(700, 1001, 400, 0.1) == pytest.approx(0.55)  # half way: (1 + final) / 2
    # a quarter of the way: final + (1 - final) * (1 + cos(pi / 4)) / 2
    assert lr_factor(550, 1001, 400, 0.0) == pytest.approx(0.8535534, abs=1e-6)
    assert lr_factor(1000, 1001, 400, 0.1) == pytest.approx(0.1)
    assert lr_factor(5000, 1001, 400, 0.1) == pytest.approx(0.1)


def test_init_from_extends_a_smaller_model_and_lr_decays(faces: Path, tmp_path: Path) -> None:
    base = cfg_with("train.steps=2", "train.alpha=0", "model.quantize=false")
    first = train(base, [str(faces)], tmp_path / "a", progress=False)
    # the same model plus the full-resolution skip, from `first`, with the learning rate decayed
    # from step 1 to zero at step 3: steps 0 and 1 move the weights, step 2 must not
    grown = cfg_with("train.steps=3", "train.alpha=0", "model.quantize=false",
                     "model.full_res_skip=true", f"train.init_from={first}",
                     "train.lr_decay_from=1", "train.lr_final_fraction=0")
    assert grown.model.skip_resolutions == (8, 16, 32)
    train(grown, [str(faces)], tmp_path / "b", progress=False, stop_at=2)
    ckpt = load_file(tmp_path / "b" / "checkpoints" / "latest.safetensors")
    start = load_file(first / "model.safetensors")
    moved = [k for k in start if not torch.equal(ckpt[f"G/{k}"], start[k])]
    assert moved, "steps 0-1 (lr at full value) changed nothing"
    log = [json.loads(ln) for ln in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["lr_g"] for r in log if "lr_g" in r] == [base.train.lr_g] * 2
    train(grown, [str(faces)], tmp_path / "b", progress=False, resume=True)
    end = load_file(tmp_path / "b" / "checkpoints" / "latest.safetensors")
    for k in start:  # step 2 ran at lr 0: G unchanged
        assert torch.equal(end[f"G/{k}"], ckpt[f"G/{k}"]), k
    assert any(k.startswith("G/skips.32.") for k in end)
    log = [json.loads(ln) for ln in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["lr_g"] for r in log if "lr_g" in r] == [base.train.lr_g] * 2 + [0.0]


def test_init_from_refuses_another_architecture(faces: Path, tmp_path: Path) -> None:
    first = train(cfg_with("train.steps=1", "train.alpha=0"), [str(faces)], tmp_path / "a",
                  progress=False)
    narrower = cfg_with("train.steps=1", "model.max_channels=16", f"train.init_from={first}")
    with pytest.raises(WeightsError, match=r"model\.max_channels is 32, this run has 16"):
        train(narrower, [str(faces)], tmp_path / "b", progress=False)
    fewer = cfg_with("train.steps=1", "model.num_skips=1", f"train.init_from={first}")
    with pytest.raises(WeightsError, match="does not have"):
        train(fewer, [str(faces)], tmp_path / "c", progress=False)
    # same tensors, other meaning: the residual output and the upsampling keep every shape
    for change, key in (("model.residual=true", "residual"), ("model.upsample=transposed",
                                                              "upsample")):
        other = cfg_with("train.steps=1", change, f"train.init_from={first}")
        with pytest.raises(WeightsError, match=rf"config\.json: model\.{key} is"):
            train(other, [str(faces)], tmp_path / key, progress=False)


def test_feature_matching_run_exports_d_and_a_new_run_starts_d_from_it(
    faces: Path, tmp_path: Path
) -> None:
    from facemend.training.checkpoint import DISCRIMINATOR_FILE, export_ema

    cfg = cfg_with("train.steps=2", "train.alpha=0.1", "train.feature_matching_weight=1")
    train(cfg, [str(faces)], tmp_path / "a", progress=False)
    log = [json.loads(ln) for ln in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    fm = [r["loss_fm"] for r in log if "loss_fm" in r]
    assert len(fm) == 2 and all(0 < v < float("inf") for v in fm)
    ckpt = load_file(tmp_path / "a" / "checkpoints" / "latest.safetensors")
    export_ema(tmp_path / "a" / "checkpoints" / "latest.safetensors", tmp_path / "w")
    saved = load_file(tmp_path / "w" / DISCRIMINATOR_FILE)
    assert saved and all(torch.equal(v, ckpt[f"D/{k}"]) for k, v in saved.items())
    # with D's lr at 0 the new run's D stays what it started from: the exported one
    cont = cfg_with("train.steps=1", "train.alpha=0.1", "train.lr_d=0",
                    f"train.init_from={tmp_path / 'w'}", f"train.init_d_from={tmp_path / 'w'}")
    train(cont, [str(faces)], tmp_path / "b", progress=False)
    after = load_file(tmp_path / "b" / "checkpoints" / "latest.safetensors")
    assert all(torch.equal(after[f"D/{k}"], v) for k, v in saved.items())
    with pytest.raises(CheckpointError, match="no discriminator weights"):
        train(cfg_with("train.steps=1", f"train.init_d_from={tmp_path / 'a'}"), [str(faces)],
              tmp_path / "c", progress=False)


@pytest.mark.parametrize("face_weight, expected", [
    (0.1, "dlib face-feature loss stands in"),
    (0.0, "no perceptual loss is used"),
])
def test_missing_vgg19_note_says_what_replaces_it(
    face_weight: float, expected: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without VGG19 weights the note names the stand-in only when its weight is positive."""
    from facemend.training.distributed import Dist
    from facemend.training.loop import build_perceptual

    monkeypatch.delenv("FACEMEND_VGG19", raising=False)
    cfg = load_config(RunConfig, None, [f"train.face_perceptual_weight={face_weight}"])
    dist = Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    assert build_perceptual(cfg, dist.device, dist) is None
    err = capsys.readouterr().err
    assert "VGG perceptual term is off" in err and expected in err


def test_a_checkpoint_older_than_a_model_option_resumes_at_its_default() -> None:
    from facemend.config import ModelConfig, to_dict
    from facemend.training.loop import model_differs

    cfg = cfg_with().model
    saved = to_dict(cfg)
    assert model_differs(saved, cfg) == []
    older = {k: v for k, v in saved.items() if k != "full_res_skip"}  # written before the option
    assert cfg.full_res_skip == ModelConfig().full_res_skip
    assert model_differs(older, cfg) == []
    other = cfg_with(f"model.full_res_skip={str(not cfg.full_res_skip).lower()}").model
    assert model_differs(older, other) == ["full_res_skip"]
    assert model_differs({**saved, "max_channels": saved["max_channels"] * 2}, cfg) == [
        "max_channels"]
    assert model_differs({**saved, "gone": 1}, cfg) == ["gone"]  # an option this code lacks


def test_resuming_with_another_model_is_refused_by_option(faces: Path, tmp_path: Path) -> None:
    cfg = cfg_with("train.steps=2", "train.alpha=0")
    train(cfg, [str(faces)], tmp_path / "run", progress=False, stop_at=1)
    wider = cfg_with("train.steps=2", "train.alpha=0",
                     f"model.max_channels={cfg.model.max_channels * 2}")
    with pytest.raises(ValueError, match=r"differs from this run's \(max_channels\)"):
        train(wider, [str(faces)], tmp_path / "run", progress=False, resume=True)
