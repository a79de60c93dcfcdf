"""Tables (paper's Table 1 layout + identity metrics), Fig. 7 plots, image grids, run merging."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facemend.io import atomic_write_bytes, save_figure

TASK_LABELS = {"bfr": "BFR", "sr8": "SR x8", "sr16": "SR x16"}
TASK_MARKERS = {"bfr": "o", "sr8": "s", "sr16": "^"}


def _fmt(v: Any, digits: int) -> str:
    """A table cell: '-' for missing, 'inf' kept, else fixed digits."""
    if v is None:
        return "-"
    f = float(v)
    return f"{f:.{digits}f}" if np.isfinite(f) else str(v)


def _get(r: dict, task: str, key: str) -> Any:
    return r.get("tasks", {}).get(task, {}).get(key)


def run_markdown(runs: list[dict[str, Any]], labels: list[str] | None = None) -> str:
    """Markdown: Table 1 layout (BFR PSNR/SSIM/LPIPS/FID; SR at x8, x16) + identity metrics."""
    labels = labels or [r["method"] for r in runs]
    head = (
        "| Method | BFR PSNR↑ | BFR SSIM↑ | BFR LPIPS↓ | BFR FID↓ | SR PSNR↑ x8 | SR PSNR↑ x16 "
        "| SR LPIPS↓ x8 | SR LPIPS↓ x16 | SR FID↓ x8 | SR FID↓ x16 |"
    )
    lines = ["## Table 1 layout", "", head, "|" + "---|" * 11]
    for label, r in zip(labels, runs, strict=True):
        cells = [
            _fmt(_get(r, "bfr", "psnr"), 2), _fmt(_get(r, "bfr", "ssim"), 3),
            _fmt(_get(r, "bfr", "lpips"), 3), _fmt(_get(r, "bfr", "fid"), 2),
            _fmt(_get(r, "sr8", "psnr"), 2), _fmt(_get(r, "sr16", "psnr"), 2),
            _fmt(_get(r, "sr8", "lpips"), 3), _fmt(_get(r, "sr16", "lpips"), 3),
            _fmt(_get(r, "sr8", "fid"), 2), _fmt(_get(r, "sr16", "fid"), 2),
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    k = runs[0].get("protocol", {}).get("k", 4) if runs else 4
    lines += ["", f"## Identity and face-embedding metrics (k = {k})", ""]
    cols = [(t, m) for t in ("bfr", "sr8", "sr16") for m in ("ssim", "detail", "iprecision",
                                                             "irecall", "fd_dlib", "id_dist")]
    names = {"ssim": "SSIM↑", "detail": "Detail→1", "iprecision": "iP↑", "irecall": "iR↑",
             "fd_dlib": "FD-dlib↓", "id_dist": "ID-dist↓"}
    lines.append("| Method | " + " | ".join(f"{TASK_LABELS[t]} {names[m]}" for t, m in cols) + " |")
    lines.append("|" + "---|" * (len(cols) + 1))
    for label, r in zip(labels, runs, strict=True):
        cells = [_fmt(_get(r, t, m), 4 if m == "fd_dlib" else 3) for t, m in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    notes = {k: v for r in runs for k, v in r.get("notes", {}).items()}
    if notes:
        lines += ["", "Unavailable metrics:"] + [f"- {k}: {v}" for k, v in sorted(notes.items())]
    if runs:
        p = runs[0].get("protocol", {})
        lines += ["", f"{runs[0].get('n_images')} images at {p.get('resolution')} px, "
                  f"features: {p.get('feature_extractor')}."]
    return "\n".join(lines) + "\n"


def _figure(width: float = 5.0, height: float = 4.0) -> Any:
    """A matplotlib Figure on the Agg canvas (no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_ipr_vs_k(runs: list[dict[str, Any]], path: str | Path,
                  labels: list[str] | None = None) -> None:
    """Fig. 7a: iPrecision (solid) and iRecall (dashed) against neighbourhood size k."""
    labels = labels or [r["method"] for r in runs]
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for ci, (label, r) in enumerate(zip(labels, runs, strict=True)):
        for task, res in r.get("tasks", {}).items():
            curve = res.get("ipr_vs_k") or {}
            if not curve:
                continue
            ks = sorted(int(k) for k in curve)
            color = f"C{ci % 10}"
            mk = TASK_MARKERS.get(task, "o")
            tag = f"{label} {TASK_LABELS.get(task, task)}"
            ax.plot(ks, [curve[str(k)]["iprecision"] for k in ks], "-", marker=mk, color=color,
                    label=f"{tag} iP")
            ax.plot(ks, [curve[str(k)]["irecall"] for k in ks], "--", marker=mk, color=color,
                    label=f"{tag} iR")
    ax.set_xlabel("neighbourhood size k")
    ax.set_ylabel("iPrecision / iRecall")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=6, ncol=2)
    else:
        ax.text(0.5, 0.5, "no identity labels", ha="center", transform=ax.transAxes)
    save_figure(fig, path, bbox_inches="tight")


def plot_precision_recall(runs: list[dict[str, Any]], path: str | Path,
                          labels: list[str] | None = None) -> None:
    """Fig. 7b: iPrecision vs iRecall, colour per method, marker per task (o BFR, s x8, ^ x16)."""
    labels = labels or [r["method"] for r in runs]
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for ci, (label, r) in enumerate(zip(labels, runs, strict=True)):
        for task, res in r.get("tasks", {}).items():
            if res.get("iprecision") is None:
                continue
            ax.scatter([res["irecall"]], [res["iprecision"]], color=f"C{ci % 10}",
                       marker=TASK_MARKERS.get(task, "o"),
                       label=f"{label} {TASK_LABELS.get(task, task)}")
    ax.set_xlabel("iRecall")
    ax.set_ylabel("iPrecision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if ax.collections:
        ax.legend(fontsize=6)
    save_figure(fig, path, bbox_inches="tight")


def save_grid(path: str | Path, rows: list[tuple[np.ndarray, ...]]) -> None:
    """PNG grid, one row per image, e.g. input | output | ground truth; every tile is resized
    (nearest) to the last one's size, so a small SR input shows its pixels."""
    if not rows:
        return
    h, w = rows[0][-1].shape[:2]
    tiles = []
    for row in rows:
        row = [t if t.shape[:2] == (h, w)
               else np.asarray(Image.fromarray(t).resize((w, h), Image.Resampling.NEAREST))
               for t in row]
        tiles.append(np.concatenate(row, axis=1))  # (H, len(row) W, 3)
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(tiles, axis=0)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def compare_grids(runs: list[dict[str, Any]], run_dirs: list[str | Path], out: str | Path,
                  n: int = 6) -> list[Path]:
    """Per task that every run saved outputs for (`evaluate --save-outputs`), on one test set:
    compare_grid_TASK.png, one row per face: degraded input | each run's output | ground truth.
    Returns the files written (none when a run lacks outputs or the test sets differ)."""
    saved = [r.get("outputs") for r in runs]
    if not all(saved) or len({o["testset"] for o in saved}) != 1:
        return []
    testset = Path(saved[0]["testset"])
    written = []
    for task in runs[0].get("tasks", {}):
        dirs = [Path(d) / o["dir"] / task for d, o in zip(run_dirs, saved, strict=True)]
        if not all(d.is_dir() for d in dirs):
            continue
        names = sorted(set.intersection(*({p.name for p in d.glob("*.png")} for d in dirs)))[:n]
        rows = [tuple(np.asarray(Image.open(f).convert("RGB"))
                      for f in [testset / task / name, *(d / name for d in dirs),
                                testset / "hq" / name]) for name in names]
        if rows:
            written.append(Path(out) / f"compare_grid_{task}.png")
            save_grid(written[-1], rows)
    return written


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """results.json of a run folder, with a one-line error when absent or malformed."""
    p = Path(run_dir) / "results.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no results.json (not a `facemend evaluate` run)") from None
    except ValueError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None


def compare(run_dirs: list[str | Path], out: str | Path | None = None) -> str:
    """Merge run folders into one Table 1-style markdown (written with Fig. 7 plots if `out`,
    and with `compare_grids` where the runs saved their outputs)."""
    runs = [load_run(d) for d in run_dirs]
    methods = [r["method"] for r in runs]
    labels = [m if methods.count(m) == 1 else f"{m} ({Path(d).name})"
              for m, d in zip(methods, run_dirs, strict=True)]
    md = run_markdown(runs, labels)
    if out is not None:
        o = Path(out)
        atomic_write_bytes(o / "compare.md", md.encode("utf-8"))
        plot_ipr_vs_k(runs, o / "fig7a.png", labels)
        plot_precision_recall(runs, o / "fig7b.png", labels)
        compare_grids(runs, run_dirs, o)
    return md
