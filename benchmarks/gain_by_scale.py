"""The BFR gain (PSNR, identity distance) of a model, split by the degradation's scale r.

Eq. 13 draws r in [1, 8] at every H; at H = 64 an r of 8 leaves an 8-pixel face. This reads a
`facemend evaluate` test-set cache (manifest.json with each image's degradation parameters, bfr/,
hq/), restores every BFR input with the given weights (noise_scale 0), and tabulates input vs
restored PSNR and dlib identity distance per r bucket, beside a classical denoiser (OpenCV
non-local means, h = 3, the best of 3 / 6 / 10 on the mildest bucket) and the inputs' noise level,
to show how much of the input's error is noise that a generic filter could remove; with
`--other WEIGHTS`, a second model's PSNR and identity distance too (restored at its own
resolution, resized with Lanczos as `evaluate` does); with `--jpeg Q`, the inputs are made again
from the ground truth with each image's parameters but JPEG quality Q (noise redrawn, seed 0).
Usage: python benchmarks/gain_by_scale.py --cache runs/eval-default/testset-celeba \
           --weights weights/default --out docs/gain_by_scale.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from facemend.degradations import DegradationParams, degrade_with
from facemend.evaluation.features import dlib_port_embedder
from facemend.evaluation.methods import model_restorer
from facemend.io import load_rgb
from facemend.metrics.psnr_ssim import psnr

EDGES = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0001)


def _mean_psnr(images: list[np.ndarray], hq: list[np.ndarray], idx: np.ndarray) -> float:
    """Mean per-image PSNR (dB) of images[idx] against hq[idx]."""
    return float(psnr([images[i] for i in idx], [hq[i] for i in idx]).mean())


def _mean_id_dist(e: np.ndarray, e_hq: np.ndarray, idx: np.ndarray) -> float:
    """Mean embedding distance (N, D) rows idx of e to those of e_hq."""
    return float(np.linalg.norm(e[idx] - e_hq[idx], axis=1).mean())


def main() -> None:
    """Tabulate per-r-bucket PSNR and identity distance of the input and of the model."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="Markdown table; JSON next to it")
    p.add_argument("--other", type=Path, default=None, help="a second weights folder")
    p.add_argument("--jpeg", type=int, default=None, help="redo the inputs at this JPEG quality")
    a = p.parse_args()
    files = json.loads((a.cache / "manifest.json").read_text())["files"]
    names = sorted(k.split("/", 1)[1] for k in files if k.startswith("bfr/"))
    scale = np.array([files[f"bfr/{n}"]["params"]["scale"] for n in names])
    noise = np.array([files[f"bfr/{n}"]["params"]["noise"] for n in names])
    hq = [load_rgb(a.cache / "hq" / n) for n in names]
    if a.jpeg is None:
        lq = [load_rgb(a.cache / "bfr" / n) for n in names]
    else:
        rng = np.random.default_rng(0)
        lq = [degrade_with(y, DegradationParams(**{**files[f"bfr/{n}"]["params"], "jpeg": a.jpeg}),
                           rng) for y, n in zip(hq, names)]
    out = model_restorer(a.weights, batch_size=32)("bfr", lq, lq, names)  # as `evaluate` does
    nlm = [cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(x), None, 3, 3, 3, 9) for x in lq]
    embed = dlib_port_embedder()
    e_hq, e_lq, e_out = embed(hq), embed(lq), embed(out)
    other = model_restorer(a.other, batch_size=32)("bfr", lq, lq, names) if a.other else None
    e_other = embed(other) if other is not None else None
    rows = []
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        m = (scale >= lo) & (scale < hi)
        idx = np.flatnonzero(m)
        if not len(idx):
            continue
        side = lq[0].shape[0]
        rows.append({
            "r": f"[{lo:g}, {min(hi, 8):g}{']' if hi > 8 else ')'}",
            "face_px": f"{side / hi:.0f}-{side / lo:.0f}",
            "n": int(len(idx)),
            "psnr_input": _mean_psnr(lq, hq, idx),
            "psnr_model": _mean_psnr(out, hq, idx),
            "psnr_nlm": _mean_psnr(nlm, hq, idx),
            "noise_mean": float(noise[idx].mean()),
            "id_input": _mean_id_dist(e_lq, e_hq, idx),
            "id_model": _mean_id_dist(e_out, e_hq, idx),
        })
        if other is not None:
            rows[-1]["psnr_other"] = _mean_psnr(other, hq, idx)
            rows[-1]["id_other"] = _mean_id_dist(e_other, e_hq, idx)
    lines = ["| r | face side (px) | images | mean noise δ | PSNR input | PSNR NLM | PSNR model | "
             "gain (dB) | ID-dist input | ID-dist model |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['r']} | {r['face_px']} | {r['n']} | {r['noise_mean']:.1f} | "
                     f"{r['psnr_input']:.2f} | {r['psnr_nlm']:.2f} | {r['psnr_model']:.2f} | "
                     f"{r['psnr_model'] - r['psnr_input']:+.2f} | "
                     f"{r['id_input']:.3f} | {r['id_model']:.3f} |")
    if other is not None:
        lines[0] += f" PSNR {a.other.name} | ID-dist {a.other.name} |"
        lines[1] += "---|---|"
        for k, r in enumerate(rows, start=2):
            lines[k] += f" {r['psnr_other']:.2f} | {r['id_other']:.3f} |"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"cache": str(a.cache), "weights": str(a.weights),
         "other": str(a.other) if a.other else None, "jpeg": a.jpeg, "rows": rows},
        indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
