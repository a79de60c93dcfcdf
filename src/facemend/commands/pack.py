"""`facemend pack`: folders of aligned faces -> one face pack (a file that `train --data` reads)."""

from __future__ import annotations

import argparse

HELP = "pack folders of aligned training faces into one .pack file (JPEG bytes, size-capped)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", action="append", required=True, metavar="DIR",
                   help="folder of aligned face images (recursive); repeat for several")
    p.add_argument("--out", required=True, metavar="FILE.pack", help="the pack to write")
    p.add_argument("--max-mib", type=float, default=60.0,
                   help="size cap of the pack in MiB (default 60); faces beyond it are left out")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the stored faces "
                   "(default 90; every face is re-encoded)")
    p.add_argument("--resolution", type=int, default=0, metavar="PX",
                   help="store faces centre-cropped and resized to PX (as training does); "
                   "0 = as they are (default)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from facemend.data import find_faces, split_key_fraction, square_face
    from facemend.facepack import OVERHEAD_BYTES, encode_jpeg, is_pack, write_pack
    from facemend.io import ImageError, load_rgb

    out = Path(args.out)
    if not is_pack(out):
        print(f"error: {out}: the pack's name must end in .pack (train --data reads it by that)",
              file=sys.stderr)
        return 2
    if not 1 <= args.quality <= 100 or args.max_mib <= 0 or args.resolution < 0:
        print("error: --quality must be 1-100, --max-mib above 0, --resolution 0 or more",
              file=sys.stderr)
        return 2
    try:
        entries = find_faces(args.data)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Faces go in by their split key (the hash that puts a file in the validation split), so a
    # capped pack holds every face whose key is below a threshold: the validation faces, and a
    # hash-random subset of the training faces.
    order = sorted(range(len(entries)), key=lambda i: split_key_fraction(entries[i][1].as_posix()))
    budget = int(args.max_mib * 2**20)
    used, blobs, bad, dropped, cut = OVERHEAD_BYTES, {}, 0, 0, 1.0
    for n, i in enumerate(order):
        root, rel = entries[i]
        try:
            img = load_rgb(root / rel)
        except ImageError as e:
            print(f"skipping {e}", file=sys.stderr)
            bad += 1
            continue
        blob = encode_jpeg(square_face(img, args.resolution) if args.resolution else img,
                           args.quality)
        cost = len(blob) + 8 + len(rel.as_posix().encode("utf-8")) + 1
        if used + cost > budget:
            dropped, cut = len(order) - n, split_key_fraction(rel.as_posix())
            break
        blobs[i] = blob
        used += cost
    if not blobs:
        print(f"error: no readable face fits in {args.max_mib:g} MiB under "
              f"{', '.join(args.data)}", file=sys.stderr)
        return 2
    faces = [(entries[i][1].as_posix(), blobs[i]) for i in sorted(blobs)]  # folder order
    try:
        size = write_pack(out, faces)
    except OSError as e:
        print(f"error: {out}: cannot be written ({e.strerror or e})", file=sys.stderr)
        return 2
    print(f"packed {len(faces)} faces (JPEG q {args.quality}, {size / 2**20:.1f} MiB) to {out}")
    if dropped:
        print(f"note: {dropped} faces left out beyond --max-mib {args.max_mib:g} (those whose "
              f"split key is {cut:.3f} or more; validation faces, with the lowest keys, are in)")
    if bad:
        print(f"note: {bad} unreadable file(s) skipped")
    return 0
