"""How far a widened model's new channels have joined: the weights from the new inputs into the
old outputs (zero when `train.init_from` widens a model) against the old weights beside them.

For every weight that gained inputs (out, in, ...) -> the old block is [:o, :i], the new-input
block [:o, i:]; the ratio is RMS(new-input block) / RMS(old block) of the trained wide model:
0 at step 0, about 1 once the new inputs weigh as much as the old ones.

    python benchmarks/widen_growth.py --narrow runs/stage3 \
        --wide 'lowwide=runs/s6-lowwide/final' --out docs/widen_growth

(`runs/stage3`: the stage-3 weights the session-6/7 runs were widened from; the header of
`configs/default-128-stage4-lr2e3.yaml` extracts them. `weights/default` is stage 4 since then.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from facemend.io import atomic_write_bytes
from facemend.models.pretrained import read_weights


def growth(narrow: dict[str, torch.Tensor], wide: dict[str, torch.Tensor]) -> dict[str, float]:
    """RMS of each widened weight's new-input block over that of its old block, by name."""
    out: dict[str, float] = {}
    for name, old in narrow.items():
        new = wide.get(name)
        if new is None or old.ndim < 2 or new.ndim != old.ndim or new.shape[1] <= old.shape[1]:
            continue
        o, i = old.shape[:2]
        block = new[:o].to(torch.float64)
        rms_old = block[:, :i].pow(2).mean().sqrt().item()
        rms_new = block[:, i:].pow(2).mean().sqrt().item()
        out[name] = rms_new / rms_old if rms_old > 0 else float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--narrow", required=True, help="weights folder the run was widened from")
    ap.add_argument("--wide", required=True, action="append",
                    help="trained wide weights folder; NAME=FOLDER to label it (repeatable)")
    ap.add_argument("--out", required=True, help="output stem: writes STEM.json and STEM.md")
    a = ap.parse_args(argv)
    narrow = read_weights(a.narrow)
    table: dict[str, dict] = {}
    for spec in a.wide:
        label, _, folder = spec.rpartition("=")
        ratios = growth(narrow, read_weights(folder))
        if not ratios:
            print(f"{folder}: no weight has more inputs than in {a.narrow}", file=sys.stderr)
            return 1
        values = sorted(ratios.values())
        table[label or folder] = {"folder": folder, "widened_weights": len(values),
                                  "median": statistics.median(values), "max": values[-1],
                                  "min": values[0], "per_weight": ratios}
    atomic_write_bytes(f"{a.out}.json", json.dumps(table, indent=2).encode())
    lines = [f"New-input weights of widened models, RMS relative to the old weights beside them "
             f"(narrow: `{a.narrow}`)", "",
             "| run | weights with more inputs | median | min | max |", "|---|---:|---:|---:|---:|"]
    for label, row in table.items():
        lines.append(f"| {label} | {row['widened_weights']} | {row['median']:.2%} "
                     f"| {row['min']:.2%} | {row['max']:.2%} |")
    atomic_write_bytes(f"{a.out}.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
