"""What a run leaves for people: JSONL log lines, sample grids, validation PSNR, loss curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemend.io import atomic_write_bytes, save_figure, save_rgb, to_uint8


class JsonlLog:
    """Append-only JSON-lines log (one dict per line, flushed each write)."""

    def __init__(self, path: Path, truncate_after_step: int | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_after_step is not None and path.exists():
            # on resume drop lines written after the checkpoint we resume from
            keep = [ln for ln in path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= truncate_after_step]
            atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def psnr_batch(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR (dB) over a batch of [-1, 1] images, on the 8-bit scale."""
    a8 = ((a.clamp(-1, 1) + 1) * 127.5).round()
    b8 = ((b.clamp(-1, 1) + 1) * 127.5).round()
    mse = (a8 - b8).square().flatten(1).mean(1).clamp_min(1e-10)  # (B,)
    return float((10 * torch.log10(255.0**2 / mse)).mean())


def save_grid(path: Path, rows: list[torch.Tensor]) -> None:
    """Save a grid: one column per tensor in `rows` (each (B, 3, H, W)), one row per sample."""
    B = rows[0].shape[0]
    tiles = [np.concatenate([to_uint8(r[i]) for r in rows], axis=1) for i in range(B)]
    save_rgb(path, np.concatenate(tiles, axis=0))


def plot_loss_curves(log_path: Path, out_path: Path) -> None:
    """Plot every numeric field of the JSONL log against step, one panel per loss group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln.strip()]
    if not rows:
        return
    keys = sorted({k for r in rows for k in r if k.startswith(("loss_", "val_"))})
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 1.8 * len(keys)), sharex=True,
                             squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
        if pts:
            ax.plot(*zip(*pts), lw=1)
        ax.set_ylabel(key, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    save_figure(fig, out_path, dpi=90)
    plt.close(fig)
