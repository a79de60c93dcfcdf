"""LPIPS: metric properties, the formula by hand on random weights saved in the official file
layouts, and (when the `lpips` package is installed) agreement with it on the same weights."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facemend.io import load_rgb
from facemend.metrics.lpips import (
    BACKBONE_FILES,
    HEAD_FILES,
    LPIPS,
    LPIPSWeightsError,
    alexnet_features,
    load_lpips,
    vgg16_features,
)

CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def _write_random_weights(root, net: str, seed: int = 0) -> tuple[dict, dict]:
    """torchvision-layout backbone (+ a classifier key) and official-layout heads, random."""
    g = torch.Generator().manual_seed(seed)
    feats = alexnet_features() if net == "alex" else vgg16_features()
    backbone = {f"features.{k}": torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
                if k.endswith("weight") else torch.randn(v.shape, generator=g) * 0.01
                for k, v in feats.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # ignored by the loader
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
             for i, c in enumerate(CHANNELS[net])}
    torch.save(backbone, root / BACKBONE_FILES[net])
    (root / "weights" / "v0.1").mkdir(parents=True, exist_ok=True)
    torch.save(heads, root / "weights" / "v0.1" / HEAD_FILES[net])
    return backbone, heads


@pytest.fixture(scope="module")
def faces(face_files) -> torch.Tensor:
    """Four real faces at 64 px, (4, 3, 64, 64) in [-1, 1]."""
    imgs = [load_rgb(p)[::2, ::2] for p in face_files[:4]]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _alex_by_hand(x: torch.Tensor, y: torch.Tensor, bb: dict, heads: dict) -> torch.Tensor:
    """LPIPS-alex v0.1 written out layer by layer from the state dicts."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feats(z: torch.Tensor) -> list[torch.Tensor]:
        z = (z - shift) / scale
        r1 = F.relu(F.conv2d(z, bb["features.0.weight"], bb["features.0.bias"], 4, 2))
        r2 = F.relu(F.conv2d(F.max_pool2d(r1, 3, 2), bb["features.3.weight"],
                             bb["features.3.bias"], 1, 2))
        r3 = F.relu(F.conv2d(F.max_pool2d(r2, 3, 2), bb["features.6.weight"],
                             bb["features.6.bias"], 1, 1))
        r4 = F.relu(F.conv2d(r3, bb["features.8.weight"], bb["features.8.bias"], 1, 1))
        r5 = F.relu(F.conv2d(r4, bb["features.10.weight"], bb["features.10.bias"], 1, 1))
        return [r1, r2, r3, r4, r5]

    total = torch.zeros(x.shape[0])
    for i, (a, b) in enumerate(zip(feats(x), feats(y), strict=True)):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        w = heads[f"lin{i}.model.1.weight"].view(1, -1, 1, 1)
        total += ((a - b) ** 2 * w).sum(1).mean(dim=(1, 2))
    return total


def test_zero_symmetric_and_hand_formula(tmp_path, faces):
    bb, heads = _write_random_weights(tmp_path, "alex")
    model = load_lpips("alex", tmp_path)
    x, y = faces, faces.roll(1, dims=0)
    with torch.no_grad():
        assert torch.allclose(model(x, x), torch.zeros(4), atol=1e-7)
        d_xy, d_yx = model(x, y), model(y, x)
    assert torch.allclose(d_xy, d_yx, atol=1e-6)
    assert (d_xy > 0).all()
    torch.testing.assert_close(d_xy, _alex_by_hand(x, y, bb, heads), rtol=1e-5, atol=1e-6)


def test_vgg_variant_loads_and_runs(tmp_path, faces):
    _write_random_weights(tmp_path, "vgg")
    model = load_lpips("vgg", tmp_path)
    with torch.no_grad():
        d = model(faces[:2], faces[2:])
    assert d.shape == (2,) and (d > 0).all()


def test_missing_files_give_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEMEND_LPIPS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(LPIPSWeightsError) as e:
        load_lpips("vgg", tmp_path)
    msg = str(e.value)
    assert "vgg16-397923af.pth" in msg and "FACEMEND_LPIPS_DIR" in msg and "\n" not in msg
    monkeypatch.setenv("FACEMEND_LPIPS_DIR", str(tmp_path))
    torch.save({}, tmp_path / "alexnet-owt-7be5be79.pth")
    monkeypatch.setattr("facemend.metrics.lpips._lpips_package_dir", lambda: None)
    with pytest.raises(LPIPSWeightsError, match=r"weights/v0.1/alex.pth"):
        load_lpips("alex")


@pytest.mark.skipif(importlib.util.find_spec("lpips") is None, reason="lpips not installed")
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_official_lpips_package(tmp_path, faces, monkeypatch, net):
    """The official implementation (its real heads) with our random backbone, via a tiny
    stand-in for torchvision.models (torchvision cannot be imported here)."""
    bb, _ = _write_random_weights(tmp_path, net)
    feats = alexnet_features() if net == "alex" else vgg16_features()
    feats.load_state_dict({k[9:]: v for k, v in bb.items() if k.startswith("features.")})
    tv = types.ModuleType("torchvision")
    tv.models = types.SimpleNamespace(  # type: ignore[attr-defined]
        alexnet=lambda **kw: types.SimpleNamespace(features=feats),
        vgg16=lambda **kw: types.SimpleNamespace(features=feats),
    )
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    import lpips

    ref = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    ours = LPIPS(net)
    ours.load_backbone(bb)
    pkg = importlib.util.find_spec("lpips").submodule_search_locations[0]
    ours.load_heads(torch.load(f"{pkg}/weights/v0.1/{net}.pth", map_location="cpu",
                               weights_only=True))
    with torch.no_grad():
        want = ref(faces[:2], faces[2:]).flatten()
        got = ours(faces[:2], faces[2:])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
