"""Does a model underfit or overfit? Its BFR gain on training vs held-out faces.

Degrades N faces of the training split and N of the validation split (the training loop's own
split: file hash < val_fraction) with eq. 13 at the model's resolution (fixed seed per image,
the same draws for every model), restores them with noise_scale 0 and reports mean per-image
PSNR of input and output on each split. Equal gains on both splits mean the model has not begun
to memorise its training faces: more data would not help it, more capacity or steps would
(underfitting). A clearly larger training gain would mean overfitting.
Usage: python benchmarks/fit_check.py --weights weights/default --weights weights/default-64 \
           --data ../shared/data/celeba/train128 --data ../shared/data/lfw/train128 \
           --out docs/fit_check.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from facemend.config import DegradationConfig
from facemend.data import FaceFolder
from facemend.io import to_uint8
from facemend.metrics.psnr_ssim import psnr
from facemend.models.generator import Generator
from facemend.models.pretrained import from_pretrained


def _uint8(x: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, H, W) in [-1, 1] -> B arrays (H, W, 3) uint8."""
    return [to_uint8(t) for t in x]


def split_gain(G: Generator, data: list[str], split: str, n: int, seed: int,
               val_fraction: float) -> dict[str, float]:
    """Mean PSNR of eq. 13 inputs and of the model's outputs on n faces of one split."""
    H = int(G.cfg.resolution)
    ds = FaceFolder(data, H, degradation=DegradationConfig(), seed=seed, flip=False,
                    split=split, val_fraction=val_fraction)  # type: ignore[arg-type]
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int)
    items = [ds[int(i)] for i in idx]
    lq = torch.stack([v["lq"] for v in items])  # (N, 3, H, H)
    hq = _uint8(torch.stack([v["hq"] for v in items]))
    with torch.no_grad():
        out = torch.cat([G(lq[i : i + 16], noise_scale=0.0) for i in range(0, len(lq), 16)])
    p_in = float(psnr(_uint8(lq), hq).mean())
    p_out = float(psnr(_uint8(out), hq).mean())
    return {"images": len(idx), "psnr_input": p_in, "psnr_model": p_out, "gain": p_out - p_in}


def main() -> None:
    """Tabulate train-split vs validation-split gain for each weights folder."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, action="append", required=True)
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--n", type=int, default=320, help="faces per split")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--val-fraction", type=float, default=0.02)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for w in a.weights:
        G = from_pretrained(w).eval()
        for split in ("train", "val"):
            r = split_gain(G, a.data, split, a.n, a.seed, a.val_fraction)
            rows.append({"weights": str(w), "split": split, **r})
    lines = ["| weights | split | images | PSNR input | PSNR model | gain (dB) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['weights']} | {r['split']} | {r['images']} | {r['psnr_input']:.2f} | "
                     f"{r['psnr_model']:.2f} | {r['gain']:+.2f} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"data": a.data, "n": a.n, "seed": a.seed, "val_fraction": a.val_fraction,
         "degradation": "eq. 13 defaults (DegradationConfig())", "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
