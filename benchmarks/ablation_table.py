"""docs/results.md's ablation tables from `benchmarks/ablations.sh` output (results.json files).

Usage: python benchmarks/ablation_table.py runs/ablations > table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GROUPS = {
    "Table 3 (components)": [
        ("degraded input", "input"), ("baseline: add skips, no VQ, no noise", "t3_baseline/eval"),
        ("+ LGF", "t3_lgf/eval"), ("+ LGF + quantization", "t3_lgf_vq/eval"),
        ("+ LGF + quantization + noise (full)", "t3_full/eval"),
        ("full, seed 1 (run-to-run noise)", "t3_full_seed1/eval")],
    "Number of skip connections (Figure 3), full model": [
        ("1 skip (8 px)", "skips_1/eval"), ("2 skips (8, 16 px)", "skips_2/eval"),
        ("3 skips (8, 16, 32 px; the paper's maximum at 64 px)", "t3_full/eval"),
        ("3 skips + facemend's full-resolution skip (64 px)", "skips_3_full/eval")],
    "Adversarial weight alpha, full model": [
        ("alpha = 0.03", "alpha_0.03/eval"), ("alpha = 0.1", "t3_full/eval"),
        ("alpha = 0.3", "alpha_0.3/eval")],
}
HEAD = ("| variant | PSNR↑ | SSIM↑ | LPIPS↓ | FD-dlib↓ | iPrecision↑ | iRecall↑ | ID-dist↓ |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|")


def row(label: str, folder: Path) -> str:
    """One Markdown row of BFR metrics, or a note that the run is missing."""
    f = folder / "results.json"
    if not f.is_file():
        return f"| {label} | (not run) | | | | | | |"
    m = json.loads(f.read_text())["tasks"]["bfr"]
    lp = "n/a" if m.get("lpips") is None else f"{m['lpips']:.3f}"
    return (f"| {label} | {m['psnr']:.2f} | {m['ssim']:.3f} | {lp} | {m['fd_dlib']:.4f} | "
            f"{m['iprecision']:.3f} | {m['irecall']:.3f} | {m['id_dist']:.3f} |")


def main() -> None:
    """Print the three tables."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ablations")
    for title, rows in GROUPS.items():
        print(f"**{title}**\n\n{HEAD}")
        for label, sub in rows:
            print(row(label, root / sub))
        print()


if __name__ == "__main__":
    main()
