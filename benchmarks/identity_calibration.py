"""What an identity distance of 0.40 (and +3 dB) means on the evaluation faces.

Embeds the ground-truth faces of a `facemend evaluate` test-set cache (hq/, at the cache's
resolution) with the evaluation's dlib face network, and reports (1) distances between different
photos of the same identity and between identities (from the set's labels.csv), and (2) the mean
distance of each face to its own ground truth after one clean, known degradation: JPEG alone, and
bicubic down- and up-sampling by 2, 4 and 8 (no blur kernel, no noise), with their mean PSNR.
The targets in docs/results.md are a mean distance of at most 0.40 and a PSNR 3 dB above the
input's after eq. 13's degradations (r drawn from [1, 8]) and restoration.
Usage: python benchmarks/identity_calibration.py --cache runs/eval-128/testset-celeba-128 \
           --labels ../shared/data/celeba/eval256/labels.csv --out docs/identity_calibration.md
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from facemend.degradations import jpeg_compress
from facemend.evaluation.features import dlib_port_embedder
from facemend.io import load_rgb
from facemend.metrics.psnr_ssim import psnr


def down_up(img: np.ndarray, r: int) -> np.ndarray:
    """(H, W, 3) uint8 bicubic down by r and back up to (H, W)."""
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((w // r, h // r), Image.Resampling.BICUBIC)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def main() -> None:
    """Tabulate same-identity / other-identity distances and distances after clean degradations."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    with a.labels.open(newline="") as f:
        label = {Path(r["file"]).stem: r["identity"] for r in csv.DictReader(f)}
    files = sorted((a.cache / "hq").glob("*.png"))
    hq = [load_rgb(f) for f in files]
    ids = np.array([label[f.stem] for f in files])
    embed = dlib_port_embedder()
    e = embed(hq)  # (N, 128)
    d = np.linalg.norm(e[:, None] - e[None], axis=2)  # (N, N)
    same = (ids[:, None] == ids[None]) & ~np.eye(len(ids), dtype=bool)
    other = ids[:, None] != ids[None]
    has_same = same.any(axis=1)
    rows: list[tuple[str, float, float | None]] = [
        ("another photo of the same identity (mean over pairs)", float(d[same].mean()), None),
        ("the nearest other photo of the same identity (mean over faces)",
         float(np.mean([d[i][same[i]].min() for i in np.flatnonzero(has_same)])), None),
        ("a photo of another identity (mean over pairs)", float(d[other].mean()), None),
        ("a photo of another identity (5th percentile)", float(np.percentile(d[other], 5)), None),
    ]
    clean: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
        ("JPEG q = 90", lambda x: jpeg_compress(x, 90)),  # eq. 13's JPEG
        ("JPEG q = 60", lambda x: jpeg_compress(x, 60)),
        ("bicubic down / up x2", lambda x: down_up(x, 2)),
        ("bicubic down / up x4", lambda x: down_up(x, 4)),
        ("bicubic down / up x8", lambda x: down_up(x, 8)),
    ]
    for name, fn in clean:
        degraded = [fn(x) for x in hq]
        dist = float(np.linalg.norm(embed(degraded) - e, axis=1).mean())
        rows.append((f"its own ground truth after {name}", dist,
                     float(psnr(degraded, hq).mean())))
    side = hq[0].shape[0]
    lines = [f"| Distance of a {side} px evaluation face ({len(hq)} faces, {len(set(ids))} "
             "identities) to ... | dlib distance | PSNR (dB) |", "|---|---:|---:|"]
    lines += [f"| {name} | {v:.3f} | {'' if q is None else f'{q:.2f}'} |" for name, v, q in rows]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"cache": str(a.cache), "labels": str(a.labels), "faces": len(hq),
         "rows": [{"to": n, "distance": v, "psnr": q} for n, v, q in rows]}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
