"""Restore faces with an exported ONNX generator on onnxruntime (same protocol as the torch one).

`OnnxRestorer` is a `Restorer`: (B, 3, S, S) float in [-1, 1] -> (B, 3, S, S). With a graph
exported with `noise="input"`, it draws eps with a seeded `torch.Generator` in exactly the order
and shapes `Generator.make_noise` uses, scaled by noise_scale, so `--seed` gives the same faces
as the torch backend (to float rounding); noise_scale 0 feeds zeros and draws nothing, as
torch does. A `noise="zero"` graph is deterministic and accepts only noise_scale 0;
noise_scale None means the graph's own default: 1 with noise inputs, 0 for a zero-noise graph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemend.export import META_PREFIX


class OnnxBackendError(RuntimeError):
    """An ONNX file or runtime that cannot be used; the message names the file and the fix."""


def _runtime(path: Path, threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxBackendError(
            "onnxruntime is not installed: pip install 'facemend[onnx]'"
        ) from None
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        opts.intra_op_num_threads = max(1, int(threads))
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise OnnxBackendError(f"{path}: not a loadable ONNX model ({e})") from None


class OnnxRestorer:
    """Callable (B, 3, S, S) [-1, 1] -> (B, 3, S, S) running a facemend ONNX export."""

    def __init__(
        self, path: str | Path, noise_scale: float | None = 1.0, seed: int = 0,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxBackendError(f"{self.path}: no such ONNX file (facemend export --onnx ...)")
        self.runtime = _runtime(self.path, threads)
        meta = self.runtime.get_modelmeta().custom_metadata_map
        if META_PREFIX + "resolution" not in meta:
            raise OnnxBackendError(f"{self.path}: not a facemend export (no facemend metadata)")
        try:
            self.size = int(meta[META_PREFIX + "resolution"])
            self.noise_mode = meta[META_PREFIX + "noise"]
            shapes = json.loads(meta[META_PREFIX + "noise_shapes"])
            self.noise_shapes = [tuple(s) for s in shapes] if self.noise_mode == "input" else []
        except (KeyError, ValueError, TypeError):
            raise OnnxBackendError(f"{self.path}: incomplete or unreadable facemend metadata "
                                   "(re-export it with `facemend export --onnx`)") from None
        _check_signature(self.path, self.runtime, self.size, len(self.noise_shapes))
        if noise_scale is None:
            noise_scale = 0.0 if self.noise_mode == "zero" else 1.0
        if self.noise_mode == "zero" and noise_scale != 0:
            raise OnnxBackendError(
                f"{self.path}: exported with --noise zero (deterministic), so noise scale "
                f"{noise_scale:g} cannot be applied; use --noise-scale 0 (or leave it out) or "
                "re-export with `facemend export --noise input`"
            )
        self.noise_scale = float(noise_scale)
        self.generator = torch.Generator().manual_seed(seed)
        self.input_names = [i.name for i in self.runtime.get_inputs()]

    def make_noise(self, batch: int) -> list[torch.Tensor]:
        """eps for one call: drawn as `Generator.make_noise` draws it, times noise_scale."""
        if self.noise_scale == 0:
            return [torch.zeros((batch, *s)) for s in self.noise_shapes]
        eps = [torch.randn((batch, *s), generator=self.generator) for s in self.noise_shapes]
        return [e * self.noise_scale for e in eps]

    def run(self, x: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """One forward with explicit noise tensors (or none for a zero-noise graph)."""
        B = x.shape[0]
        assert tuple(x.shape[1:]) == (3, self.size, self.size), tuple(x.shape)
        noise = noise if noise is not None else []
        feeds = {"x": _numpy(x)}
        for name, e in zip(self.input_names[1:], noise, strict=True):
            assert e.shape[0] == B, (name, tuple(e.shape))
            feeds[name] = _numpy(e)
        (y,) = self.runtime.run(["y"], feeds)
        return torch.from_numpy(y)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, self.make_noise(x.shape[0]))


def _check_signature(path: Path, runtime: Any, size: int, n_noise: int) -> None:
    """OnnxBackendError unless the graph takes x (B, 3, size, size) and n_noise noise inputs
    and returns y."""
    inputs = runtime.get_inputs()
    outputs = [o.name for o in runtime.get_outputs()]
    x = inputs[0] if inputs else None
    ok = (x is not None and x.name == "x" and len(inputs) == 1 + n_noise and "y" in outputs
          and len(x.shape) == 4
          and all(not isinstance(d, int) or d == e for d, e in zip(x.shape[1:], (3, size, size),
                                                                  strict=True)))
    if not ok:
        got = ", ".join(f"{i.name} {list(i.shape)}" for i in inputs)
        raise OnnxBackendError(f"{path}: inputs ({got}) and outputs ({', '.join(outputs)}) are "
                               f"not those of a facemend export (x [B, 3, {size}, {size}] and "
                               f"{n_noise} noise input(s) -> y)")


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().float().cpu().numpy())


def onnx_restorer(
    path: str | Path, noise_scale: float | None = 1.0, seed: int = 0,
    threads: int | None = None,
) -> tuple[OnnxRestorer, int]:
    """(restorer, size) for `restore_photo` from an ONNX file written by `facemend export`
    (noise_scale None: the graph's default, see the module docstring)."""
    restorer = OnnxRestorer(path, noise_scale=noise_scale, seed=seed, threads=threads)
    return restorer, restorer.size
