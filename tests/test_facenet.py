"""FaceNet InceptionResnetV1: facenet-pytorch key layout, loading rules, embedder, evaluate."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facemend.commands import evaluate as cmd
from facemend.config import EvalConfig
from facemend.evaluation import evaluate
from facemend.evaluation.features import FeatureError, face_embedder, facenet_embedder
from facemend.io import save_rgb
from facemend.metrics.facenet import (
    CASIA_FILE,
    ENV_FILE,
    VGGFACE2_FILE,
    FaceNetWeightsError,
    InceptionResnetV1,
    facenet_input,
    load_facenet,
)


def _random_state(seed: int = 0, classes: int = 8631) -> dict[str, torch.Tensor]:
    """A random InceptionResnetV1 state dict plus facenet-pytorch's `logits` classifier."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in InceptionResnetV1().state_dict().items():
        if not v.is_floating_point():
            state[k] = v
        elif "running_var" in k:
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.05
    state["logits.weight"] = torch.randn(classes, 512, generator=g) * 0.01
    state["logits.bias"] = torch.zeros(classes)
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random state dict saved as facenet-pytorch's VGGFace2 file."""
    state = _random_state()
    path = tmp_path_factory.mktemp("facenet") / VGGFACE2_FILE
    torch.save(state, path)
    return path, state


@pytest.fixture
def no_weights(tmp_path, monkeypatch) -> None:
    """No FaceNet file anywhere on the search path."""
    monkeypatch.delenv(ENV_FILE, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def test_state_dict_layout_and_parameter_count():
    model = InceptionResnetV1()
    state = model.state_dict()
    # Keys of facenet-pytorch's InceptionResnetV1, spelled out as its files have them.
    for key, shape in [("conv2d_1a.conv.weight", (32, 3, 3, 3)),
                       ("conv2d_4b.bn.running_var", (256,)),
                       ("repeat_1.4.branch2.2.conv.weight", (32, 32, 3, 3)),
                       ("repeat_1.0.conv2d.bias", (256,)),
                       ("mixed_6a.branch1.2.conv.weight", (256, 192, 3, 3)),
                       ("repeat_2.9.branch1.1.conv.weight", (128, 128, 1, 7)),
                       ("mixed_7a.branch2.2.bn.weight", (256,)),
                       ("repeat_3.4.conv2d.weight", (1792, 384, 1, 1)),
                       ("block8.branch1.2.conv.weight", (192, 192, 3, 1)),
                       ("last_linear.weight", (512, 1792)),
                       ("last_bn.running_mean", (512,))]:
        assert tuple(state[key].shape) == shape, key
    assert "last_linear.bias" not in state and not any(k.startswith("logits") for k in state)
    assert (len(model.repeat_1), len(model.repeat_2), len(model.repeat_3)) == (5, 10, 5)
    assert not model.block8.relu and model.repeat_3[0].scale == 0.20
    n = sum(p.numel() for p in model.parameters())
    assert n == pytest.approx(23.5e6, rel=0.01)


def test_load_roundtrip_output_shape_and_norm(weights, monkeypatch):
    path, state = weights
    monkeypatch.setenv(ENV_FILE, str(path))
    model = load_facenet()  # found through the env var
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    loaded = model.state_dict()
    for k in ("conv2d_1a.conv.weight", "repeat_2.3.conv2d.bias", "last_bn.running_var"):
        assert torch.equal(loaded[k], state[k]), k
    with torch.no_grad():
        y = model(torch.randn(3, 3, 160, 160))
    assert y.shape == (3, 512) and torch.isfinite(y).all()
    assert torch.allclose(y.norm(dim=1), torch.ones(3), atol=1e-5)


def test_casia_file_in_a_folder_and_old_files_without_batch_counters(tmp_path):
    state = _random_state(seed=1, classes=10575)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / CASIA_FILE)
    model = load_facenet(tmp_path)
    assert torch.equal(model.last_linear.weight, state["last_linear.weight"])


def test_missing_file_is_one_line(no_weights, tmp_path):
    with pytest.raises(FaceNetWeightsError) as e:
        load_facenet(tmp_path / "nowhere.pt")
    msg = str(e.value)
    assert VGGFACE2_FILE in msg and ENV_FILE in msg and "facenet-pytorch" in msg
    assert "\n" not in msg
    with pytest.raises(FeatureError, match=VGGFACE2_FILE):
        face_embedder("facenet")


def test_foreign_state_dicts_are_rejected_clearly(tmp_path, weights):
    foreign = tmp_path / "foreign.pt"
    torch.save({"fc.weight": torch.zeros(3, 3), "features.0.bias": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match=r"not a facenet-pytorch .*unexpected key 'fc.weight'"):
        load_facenet(foreign)
    _, state = weights
    partial = {k: v for k, v in state.items() if not k.startswith("block8.")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"missing key 'block8\."):
        load_facenet(tmp_path / "partial.pt")
    wrong = dict(state, **{"last_linear.weight": torch.zeros(128, 1792)})
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match=r"'last_linear.weight' has shape \(128, 1792\)"):
        load_facenet(tmp_path / "wrong.pt")


class _Payload:
    """Unpickling this would create a file: proof that no pickled code runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"conv2d_1a.conv.weight": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="never pickled code"):
        load_facenet(tmp_path / "evil.pt")
    assert not marker.exists()


def test_input_standardisation_and_embedder_on_uint8_faces(weights):
    white = facenet_input(torch.ones(1, 3, 64, 64))  # 255 -> (255 - 127.5) / 128
    assert white.shape == (1, 3, 160, 160)
    assert torch.allclose(white, torch.full_like(white, 127.5 / 128))
    path, _ = weights
    embed = facenet_embedder(path, batch_size=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    e = embed(images)
    assert e.shape == (3, 512) and e.dtype == np.float64
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.allclose(embed(images[:1]), e[:1], atol=1e-6)  # batch size does not matter
    assert embed([]).shape == (0, 512)


@pytest.fixture
def faces(tmp_path) -> tuple[Path, Path]:
    """4 generated 64-px 'faces' (2 identities x 2) and their labels.csv."""
    data, labels = tmp_path / "data", tmp_path / "labels.csv"
    data.mkdir()
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    rows = []
    for i in range(4):
        rgb = np.stack([xx * (i + 1) % 1, yy, (xx + yy) / 2], axis=-1)
        blob = np.exp(-((xx - 0.5) ** 2 + (yy - 0.55) ** 2) / (0.05 + 0.02 * (i // 2)))
        img = (255 * (0.6 * rgb + 0.4 * blob[..., None])).clip(0, 255).astype(np.uint8)
        save_rgb(data / f"{i}.png", img)
        rows.append([f"{i}.png", f"person{i // 2}"])
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows([["file", "identity"], *rows])
    return data, labels


def _cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    return cmd.run(p.parse_args(argv))


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # FD of 4 points in 512-D
def test_evaluate_with_facenet(faces, weights, tmp_path, monkeypatch, capsys):
    data, labels = faces
    path, _ = weights
    monkeypatch.setenv(ENV_FILE, str(path))
    cfg = EvalConfig(resolution=64, tasks=("bfr",), k=2, feature_extractor="facenet")
    res = evaluate(data, tmp_path / "run", "bicubic", identities=labels, cfg=cfg, progress=False)
    bfr = res["tasks"]["bfr"]
    assert 0 <= bfr["iprecision"] <= 1 and 0 <= bfr["irecall"] <= 1
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "FaceNet" in saved["protocol"]["feature_extractor"]
    assert VGGFACE2_FILE in saved["protocol"]["feature_extractor"]
    # The CLI with weights, then without: one line naming the file and the env var.
    argv = ["--data", str(data), "--identities", str(labels), "--method", "bicubic",
            "--resolution", "64",
            "--tasks", "bfr", "--no-progress", "--set", "eval.feature_extractor=facenet",
            "--set", "eval.k=2", "--cache", str(tmp_path / "run" / "testset")]
    assert _cli([*argv, "--out", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert cli["tasks"]["bfr"]["iprecision"] == bfr["iprecision"]
    monkeypatch.delenv(ENV_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    capsys.readouterr()
    rc = _cli([*argv, "--out", str(tmp_path / "cli2")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0
    assert err.startswith("error: ") and VGGFACE2_FILE in err and ENV_FILE in err
