"""What `facemend evaluate` can run: baselines, a trained model, or any callable (test oracles).

A `Restorer` is called per batch as restorer(task, inputs, smalls, names) where `inputs` are the
full-size degraded images (H, W, 3) uint8 (for SR: the bicubic-upsampled input of DESIGN §2),
`smalls` the low-resolution SR inputs (for BFR: the same list as `inputs`) and `names` the test
file names; it returns one (H, W, 3) uint8 image per input.

Baselines:
- `identity`: returns the degraded full-size input unchanged (for SR that is the bicubic upsample).
- `bicubic` / `lanczos`: for SR, upsample the small input to H with that Pillow filter (so
  `bicubic` equals `identity` on SR); for BFR the input is already H x H and there is nothing to
  resize, so both return the input unchanged (rows equal `identity`, kept for Table 1's layout).
- `model`: a trained generator (`facemend.models.pretrained`) with the trained noise, as
  `facemend restore` runs it (eval.noise_scale, 0 = deterministic; noise seeded by eval.seed);
  inputs whose size differs from the model's resolution are resized to it with Lanczos and the
  outputs resized back with Lanczos (recorded in the results' protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

Restorer = Callable[[str, list[np.ndarray], list[np.ndarray], list[str]], list[np.ndarray]]
METHODS = ("model", "identity", "bicubic", "lanczos")

DESCRIPTIONS: dict[str, str] = {
    "identity": "output = degraded full-size input (SR: Pillow bicubic upsample of small input)",
    "bicubic": "SR: small input upsampled with Pillow BICUBIC; BFR: input unchanged",
    "lanczos": "SR: small input upsampled with Pillow LANCZOS; BFR: input unchanged",
}


def identity_restorer(
    task: str, inputs: list[np.ndarray], smalls: list[np.ndarray], names: list[str]
) -> list[np.ndarray]:
    """The degraded input itself (the paper's 'DEG*' row of Fig. 7a)."""
    return list(inputs)


def resize_restorer(resample: Image.Resampling) -> Restorer:
    """Upsample SR inputs from their small version with a Pillow filter; BFR passes through."""

    def restore(
        task: str, inputs: list[np.ndarray], smalls: list[np.ndarray], names: list[str]
    ) -> list[np.ndarray]:
        if task == "bfr":
            return list(inputs)
        out = []
        for x, s in zip(inputs, smalls, strict=True):
            size = (x.shape[1], x.shape[0])
            out.append(np.asarray(Image.fromarray(s).resize(size, resample)))  # (H, W, 3)
        return out

    return restore


def model_restorer(
    weights: str | Path, batch_size: int = 8, device: str = "cpu", noise_scale: float = 1.0,
    seed: int = 0,
) -> Restorer:
    """A trained generator from a weights folder, batched, run as `facemend restore` runs it
    (`inference.restore.model_restorer`): noise_scale 1 = the trained noise, drawn from one
    generator seeded with `seed` (reproducible for a given face order and batch size), 0 = none.
    """
    import torch

    from facemend.inference.restore import model_restorer as run_model
    from facemend.models import pretrained

    loader = getattr(pretrained, "load_pretrained", None) or pretrained.from_pretrained
    G = loader(weights).to(device).eval()
    res = int(G.cfg.resolution) if hasattr(G, "cfg") else None
    forward = run_model(G, noise_scale=noise_scale, seed=seed, device=device)

    def restore(
        task: str, inputs: list[np.ndarray], smalls: list[np.ndarray], names: list[str]
    ) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for s in range(0, len(inputs), batch_size):
            chunk = inputs[s : s + batch_size]
            h, w = chunk[0].shape[:2]
            if res is not None and (h, w) != (res, res):
                chunk = [_lanczos(x, res, res) for x in chunk]
            arr = torch.from_numpy(np.stack(chunk)).to(device)  # (B, H, W, 3) uint8
            y = forward(arr.permute(0, 3, 1, 2).float() / 127.5 - 1.0)  # (B, 3, H, W), [-1, 1]
            y8 = ((y.float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
            for img in y8.permute(0, 2, 3, 1).numpy():  # (H, W, 3)
                out.append(img if img.shape[:2] == (h, w) else _lanczos(img, h, w))
        return out

    return restore


def _lanczos(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pillow LANCZOS resize of (H, W, 3) uint8 to (h, w, 3)."""
    return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.LANCZOS))


def make_restorer(
    method: str, weights: str | Path | None = None, batch_size: int = 8,
    noise_scale: float = 1.0, seed: int = 0,
) -> tuple[Restorer, str]:
    """(restorer, protocol description) for a method name of `facemend evaluate --method`."""
    if method == "identity":
        return identity_restorer, DESCRIPTIONS["identity"]
    if method == "bicubic":
        return resize_restorer(Image.Resampling.BICUBIC), DESCRIPTIONS["bicubic"]
    if method == "lanczos":
        return resize_restorer(Image.Resampling.LANCZOS), DESCRIPTIONS["lanczos"]
    if method == "model":
        if weights is None:  # as `facemend restore`: the bundled model
            from facemend.models.pretrained import find_default_weights

            weights = find_default_weights()
        desc = (f"generator from {Path(weights).name}, noise_scale={noise_scale:g} (seed "
                f"{seed}), Lanczos resize if needed")
        return model_restorer(weights, batch_size, noise_scale=noise_scale, seed=seed), desc
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
