"""Does restoration keep a face's own detail? Aligned HQ faces at S px, degraded, restored with
`FaceRestorer(...).enhance(face, aligned=True)` (noise 0), scored against the clean face.

For clean, JPEG q 70 and Gaussian-blur 1 px inputs at each S: PSNR and SSIM in -> out, and the
fine-detail energy (mean square of the grey image minus its Gaussian blur, sigma 1.5 px at S)
as a fraction of the clean face's; for eq. 13 degradations (seed 1000 + image index) at 512 px,
the plain rule (`detail=False`: the model's output, Lanczos-resized to S) beside the default.

    python benchmarks/detail_preservation.py --faces ../shared/data/hq512 \
        --out docs/detail_preservation.md --json docs/detail_preservation.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facemend.degradations import blur, degrade, jpeg_compress
from facemend.inference.api import FaceRestorer
from facemend.inference.detail import resize_uint8
from facemend.io import load_rgb
from facemend.metrics.detail import fine_detail_energy
from facemend.metrics.psnr_ssim import psnr, ssim


def detail_energy(img: np.ndarray) -> float:
    """Fine-detail energy at sigma 1.5 px (the scale the restore benchmark was specified at)."""
    return fine_detail_energy(img, sigma=1.5)


def inputs_for(clean: np.ndarray, index: int, size: int) -> dict[str, np.ndarray]:
    """The degraded copies of one clean face at `size` px."""
    out = {"clean": clean, "JPEG q 70": jpeg_compress(clean, 70),
           "Gaussian blur 1 px": np.clip(np.rint(blur(clean, 1.0, 9)), 0, 255).astype(np.uint8)}
    if size == 512:
        out["eq. 13"] = degrade(clean, np.random.default_rng(1000 + index))[0]
    return out


def score(out: np.ndarray, clean: np.ndarray, e_clean: float) -> dict[str, float]:
    return {"psnr": min(float(psnr(out, clean)[0]), 100.0), "ssim": float(ssim(out, clean)[0]),
            "detail": detail_energy(out) / max(e_clean, 1e-9)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", required=True, help="folder of aligned HQ faces (PNG)")
    p.add_argument("--weights", default=None, help="weights folder (default: the bundled model)")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 256])
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--out", default=None, help="Markdown table")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    files = sorted(Path(args.faces).glob("*.png"))[: args.limit]
    restorers = {"default": FaceRestorer(args.weights, noise_scale=0.0, identity=False),
                 "plain": FaceRestorer(args.weights, noise_scale=0.0, identity=False,
                                       detail=False)}
    rows: dict[tuple[int, str, str], list[dict[str, float]]] = {}
    t0 = time.perf_counter()
    for i, f in enumerate(files):
        hq = load_rgb(f)
        for S in args.sizes:
            clean = hq if hq.shape[0] == S else resize_uint8(hq, S)
            e_clean = detail_energy(clean)
            for name, x in inputs_for(clean, i, S).items():
                rows.setdefault((S, name, "input"), []).append(score(x, clean, e_clean))
                for key, r in restorers.items():
                    if key == "plain" and name != "eq. 13":
                        continue
                    y = r.enhance(x, aligned=True).image
                    if y.shape != x.shape:  # the plain rule answers at the model's size
                        y = resize_uint8(y, S)
                    rows.setdefault((S, name, key), []).append(score(y, clean, e_clean))
    table = {f"{S}|{name}|{key}": {m: float(np.mean([v[m] for v in vals])) for m in vals[0]}
             for (S, name, key), vals in rows.items()}
    lines = [f"Faces: {len(files)} of `{args.faces}`; weights: "
             f"`{restorers['default'].info['weights']}`; {time.perf_counter() - t0:.0f} s.",
             "", "| S | input | PSNR in -> out | SSIM in -> out | fine detail in -> out |",
             "|---|---|---|---|---|"]
    for S in args.sizes:
        for name in ("clean", "JPEG q 70", "Gaussian blur 1 px", "eq. 13"):
            if f"{S}|{name}|input" not in table:
                continue
            a, b = table[f"{S}|{name}|input"], table[f"{S}|{name}|default"]
            lines.append(f"| {S} | {name} | {a['psnr']:.2f} -> {b['psnr']:.2f} | "
                         f"{a['ssim']:.3f} -> {b['ssim']:.3f} | "
                         f"{a['detail']:.2f} -> {b['detail']:.2f} |")
            if f"{S}|{name}|plain" in table:
                c = table[f"{S}|{name}|plain"]
                lines.append(f"| {S} | {name}, plain rule (`--no-detail`) | {a['psnr']:.2f} -> "
                             f"{c['psnr']:.2f} | {a['ssim']:.3f} -> {c['ssim']:.3f} | "
                             f"{a['detail']:.2f} -> {c['detail']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:  # a hand-written header above the generated table is kept
        old = Path(args.out).read_text() if Path(args.out).is_file() else ""
        keep = old[: old.index("Faces: ")] if "Faces: " in old else ""
        Path(args.out).write_text(keep + text)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
