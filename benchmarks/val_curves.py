"""Side-by-side validation curves of training runs: PSNR per image seen and per minute of training.

Reads each run's `log.jsonl` (written by `facemend train`): `val_psnr` every `sample_every` steps,
and `images` / `images_per_s` every `log_every` steps. Minutes are the sum of each logging
window's images / images_per_s: training time without validation and checkpoints, comparable
between runs only when they ran under the same load (here: two one-thread runs side by side).
Writes a PNG with both panels and a Markdown table of validation PSNR at common steps.
Usage: python benchmarks/val_curves.py --run 'lr 5e-4=runs/a' --run 'lr 2e-3=runs/b' \
           --out docs/lr-val_curves
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from facemend.io import atomic_write_bytes, save_figure


def read_curve(run: Path) -> list[dict[str, float]]:
    """[{step, images, minutes, val_psnr, val_psnr_input}] at each validation of a run."""
    rows = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines() if ln.strip()]
    seconds, images, per_step = 0.0, 0, 0.0
    out: list[dict[str, float]] = []
    for r in rows:
        if "images_per_s" in r:
            seconds += (r["images"] - images) / max(r["images_per_s"], 1e-9)
            per_step = r["images"] / max(r["step"], 1)
            images = r["images"]
        if "val_psnr" in r:
            out.append({"step": r["step"], "images": r["step"] * per_step,
                        "minutes": seconds / 60, "val_psnr": r["val_psnr"],
                        "val_psnr_input": r["val_psnr_input"]})
    return out


def plot(curves: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Two panels: validation PSNR gain over the input against images and training minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for name, pts in curves.items():
        gain = [p["val_psnr"] - p["val_psnr_input"] for p in pts]  # runs may differ in inputs
        axes[0].plot([p["images"] for p in pts], gain, marker=".", label=name)
        axes[1].plot([p["minutes"] for p in pts], gain, marker=".", label=name)
    axes[0].set_xlabel("images seen")
    axes[1].set_xlabel("training minutes (one thread each, side by side)")
    axes[0].set_ylabel("validation PSNR - input (dB)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def table(curves: dict[str, list[dict[str, float]]]) -> str:
    """Markdown: validation PSNR (and minutes) of every run at each step all of them reached."""
    names = list(curves)
    steps = sorted(set.intersection(*({p["step"] for p in pts} for pts in curves.values())))
    lines = ["| step | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for s in steps:
        cells = []
        for n in names:
            p = next(p for p in curves[n] if p["step"] == s)
            cells.append(f"{p['val_psnr']:.3f} ({p['minutes']:.0f} min)")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    inputs = " | ".join(f"{curves[n][0]['val_psnr_input']:.2f}" for n in names)
    lines.append(f"| input | {inputs} |")  # each run's own degraded validation faces
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (repeatable)")
    ap.add_argument("--out", required=True, help="output stem: writes STEM.png and STEM.md")
    args = ap.parse_args()
    curves = {}
    for item in args.run:
        name, _, run = item.partition("=")
        curves[name] = read_curve(Path(run))
    out = Path(args.out)
    plot(curves, out.with_suffix(".png"))
    runs = " ".join(f"--run {shlex.quote(r)}" for r in args.run)
    md = (f"# Validation PSNR side by side\n\n`python benchmarks/val_curves.py {runs} "
          f"--out {args.out}`\n\n" + table(curves))
    atomic_write_bytes(out.with_suffix(".md"), md.encode())
    print(md)


if __name__ == "__main__":
    main()
