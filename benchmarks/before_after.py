"""README's before/after picture from a `facemend restore` run: per photo, the photo upscaled
with bicubic beside the restored photo, both cropped to the union of the detected faces (with a
margin); several photos are stacked as rows of one width.

Usage (after `make restore`):
    python benchmarks/before_after.py --report out/examples/report.json \
        --photo examples/photos/obama1.jpg --photo examples/photos/obama_and_biden_lowq.jpg \
        --out docs/before_after.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

GAP = 8  # white pixels between the halves and between rows


def pair(report: dict, photo: str, margin: float) -> tuple[Image.Image, int]:
    """(before | restored crop of one photo, number of faces)."""
    scale = float(report["settings"]["upscale"])
    entry = next(f for f in report["files"] if f["file"] == photo)
    boxes = [f["box"] for f in entry["faces"]]  # (x0, y0, x1, y1) in input pixels
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    m = margin * max(x1 - x0, y1 - y0)
    restored = Image.open(next(o for o in entry["outputs"] if "/restored_imgs/" in o))
    src = Image.open(photo).convert("RGB")
    before = src.resize(restored.size, Image.Resampling.BICUBIC)
    box = tuple(round(v * scale) for v in (max(0, x0 - m), max(0, y0 - m),
                                            min(src.width, x1 + m), min(src.height, y1 + m)))
    left, right = before.crop(box), restored.convert("RGB").crop(box)
    canvas = Image.new("RGB", (left.width * 2 + GAP, left.height), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + GAP, 0))
    return canvas, len(boxes)


def main() -> None:
    """Write the side-by-side crops of the photos of a restore report, one row each."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", type=Path, required=True, help="report.json of facemend restore")
    p.add_argument("--photo", action="append", required=True,
                   help="an input photo, as named in the report (repeat for more rows)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--margin", type=float, default=0.35, help="of the union box's larger side")
    p.add_argument("--width", type=int, default=1024, help="width of every row")
    a = p.parse_args()
    report = json.loads(a.report.read_text())
    rows = []
    for photo in a.photo:
        row, n = pair(report, photo, a.margin)
        h = round(row.height * a.width / row.width)
        rows.append(row.resize((a.width, h), Image.Resampling.LANCZOS))
        print(f"{photo}: {n} face(s)")
    canvas = Image.new("RGB", (a.width, sum(r.height for r in rows) + GAP * (len(rows) - 1)),
                       "white")
    y = 0
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height + GAP
    a.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(a.out)
    print(f"{a.out}: {canvas.width}x{canvas.height}")


if __name__ == "__main__":
    main()
