"""ONNX export of the generator G(x, eps) (DESIGN §1: noise passable as explicit tensors).

Two graphs, both with a dynamic batch axis:
- `noise="zero"`: one input `x` (B, 3, H, H) in [-1, 1]; G runs without noise (noise_scale 0),
  so the graph is deterministic.
- `noise="input"`: `x` plus one input `noise{i}` per `G.noise_shapes(B)` entry, in the order G
  consumes them; eps is fed already multiplied by the user's noise_scale (G multiplies by 1.0).
  Feeding the tensors `G.make_noise` would draw reproduces a seeded torch run.
The file carries metadata (`facemend_*` keys) that `inference.onnx_backend` reads back: the
resolution, the noise mode and the per-sample noise shapes. Uses torch's TorchScript-based
exporter (`dynamo=False`), which needs only the `onnx` package.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from facemend.models.generator import Generator

NoiseMode = Literal["zero", "input"]
DEFAULT_OPSET = 17
META_PREFIX = "facemend_"


class ExportableGenerator(nn.Module):
    """G with a flat signature for tracing: (x, *noise) -> (B, 3, H, H)."""

    def __init__(self, G: Generator, noise: NoiseMode) -> None:
        super().__init__()
        self.G, self.noise = G, noise

    def forward(self, x: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
        if self.noise == "zero" or not noise:
            return self.G(x, noise_scale=0.0)
        return self.G(x, noise=list(noise), noise_scale=1.0)


def input_names(G: Generator, noise: NoiseMode) -> list[str]:
    """ONNX input names: `x`, then `noise0..noiseN-1` when noise is an input."""
    n = len(G.noise_shapes(1)) if noise == "input" else 0
    return ["x"] + [f"noise{i}" for i in range(n)]


def export_onnx(
    G: Generator, path: str | Path, *, opset: int = DEFAULT_OPSET, noise: NoiseMode = "zero",
    trace_batch: int = 2,
) -> Path:
    """Write G as ONNX to `path` (dynamic batch; noise fixed at zero or explicit inputs)."""
    if noise not in ("zero", "input"):
        raise ValueError(f"noise must be 'zero' or 'input', got {noise!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    G = G.eval()
    H = G.cfg.resolution
    names = input_names(G, noise)
    x = torch.zeros(trace_batch, 3, H, H)
    eps = G.make_noise(trace_batch, torch.Generator().manual_seed(0), torch.device("cpu"))
    args = (x, *eps[: len(names) - 1])
    dynamic = {name: {0: "batch"} for name in [*names, "y"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings for shape checks that hold for any batch
        torch.onnx.export(
            ExportableGenerator(G, noise), args, str(path), dynamo=False, input_names=names,
            output_names=["y"], dynamic_axes=dynamic, opset_version=opset,
            do_constant_folding=True,
        )
    _write_metadata(path, G, noise)
    return path


def _write_metadata(path: Path, G: Generator, noise: NoiseMode) -> None:
    """Store resolution, noise mode and per-sample noise shapes in the model's metadata_props."""
    import onnx

    model = onnx.load(str(path))
    meta = {
        "resolution": str(G.cfg.resolution),
        "noise": noise,
        "noise_shapes": json.dumps([list(s[1:]) for s in G.noise_shapes(1)]),
        "format_version": "1",
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    onnx.save(model, str(path))
