"""`facemend degrade`: write eq. 13 (or SR x8/x16) degraded copies of a face folder + params.csv.

Each output is a PNG at the same relative path (and stem) as its input. The random generator of a
file is seeded from (--seed, relative path), so one file's output does not depend on which other
files are in the folder or on their order. Unreadable files are reported as `path: problem` and
the rest go on; the exit code is 1 if any file failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write degraded copies (eq. 13 BFR, or SR x8/x16 inputs) of a folder of faces + params.csv"

TASKS = ("bfr", "sr8", "sr16")
CSV_COLUMNS = ("file", "sigma", "scale", "noise", "jpeg")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("in_dir", metavar="IN_DIR", help="folder of HQ faces (searched recursively)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (must not be IN_DIR)")
    p.add_argument("--seed", type=int, required=True, help="base seed (per file: seed + path)")
    p.add_argument("--resolution", type=int, default=None, metavar="H",
                   help="resize square inputs to HxH (Pillow Lanczos) first; default: keep size")
    p.add_argument("--task", choices=TASKS, default="bfr",
                   help="bfr: eq. 13 with random parameters; sr8/sr16: bicubic down x8/x16 and up")


def file_seed(seed: int, rel_path: str) -> list[int]:
    """Seed sequence for one file: (seed, first 8 bytes of sha1(relative posix path))."""
    import hashlib

    digest = hashlib.sha1(rel_path.encode("utf-8")).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def _nested(a: Path, b: Path) -> bool:
    """True if path a equals b or lies inside it (both resolved)."""
    return a == b or b in a.parents


def run(args: argparse.Namespace) -> int:
    import csv
    import io

    import numpy as np
    from PIL import Image

    from facemend.degradations import degrade, sr_input
    from facemend.io import ImageError, atomic_write_bytes, list_images, load_rgb, save_rgb

    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    if not in_dir.is_dir():
        print(f"error: {in_dir}: input folder not found")
        return 2
    ri, ro = in_dir.resolve(), out_dir.resolve()
    if _nested(ri, ro) or _nested(ro, ri):
        print(f"error: OUT_DIR {out_dir} must not be IN_DIR {in_dir}, inside it or contain it "
              "(inputs are never overwritten)")
        return 2
    if args.resolution is not None and args.resolution < 8:
        print(f"error: --resolution {args.resolution}: must be >= 8")
        return 2
    files = list_images(in_dir)
    if not files:
        print(f"error: {in_dir}: no images found")
        return 2

    rows: list[tuple[str, ...]] = []
    written: dict[Path, Path] = {}
    failed = 0
    for path in files:
        rel = path.relative_to(in_dir)
        out_path = out_dir / rel.with_suffix(".png")
        try:
            if out_path in written:
                raise ImageError(f"{path}: output {out_path} already written for "
                                 f"{written[out_path]}")
            img = load_rgb(path)  # (H, W, 3) uint8
            if args.resolution is not None and img.shape[:2] != (args.resolution,) * 2:
                h, w = img.shape[:2]
                if h != w:
                    raise ImageError(f"{path}: not square ({w}x{h}); --resolution needs aligned "
                                     "square faces")
                size = (args.resolution, args.resolution)
                img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))
            if args.task == "bfr":
                rng = np.random.default_rng(file_seed(args.seed, rel.as_posix()))
                out, params = degrade(img, rng)
                row = (rel.as_posix(), f"{params.sigma:.6f}", f"{params.scale:.6f}",
                       f"{params.noise:.6f}", str(params.jpeg))
            else:
                factor = 8 if args.task == "sr8" else 16
                if min(img.shape[:2]) < factor:
                    raise ImageError(f"{path}: smaller than the SR factor {factor}")
                out = sr_input(img, factor)
                row = (rel.as_posix(), "", str(float(factor)), "", "")
            save_rgb(out_path, out)
        except ImageError as e:
            print(e)
            failed += 1
            continue
        except OSError as e:  # cannot write the output
            print(f"{out_path}: cannot write ({e.strerror or e})")
            failed += 1
            continue
        written[out_path] = path
        rows.append(row)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    atomic_write_bytes(out_dir / "params.csv", buf.getvalue().encode("utf-8"))
    print(f"{len(rows)} degraded ({args.task}) -> {out_dir}, {failed} failed; "
          f"parameters in {out_dir / 'params.csv'}")
    return 1 if failed else 0
