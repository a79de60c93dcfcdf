"""`facemend align`: FFHQ-rule aligned crops (68 landmarks) of every face in a folder of photos."""

from __future__ import annotations

import argparse

HELP = "crop every face of a folder of photos by the FFHQ alignment rule; writes faces.csv"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("in_dir", help="folder of photos (searched recursively)")
    p.add_argument("out_dir", help="folder for the crops and faces.csv")
    p.add_argument("--size", type=int, default=512, help="crop side in pixels (default 512)")
    p.add_argument("--detector", choices=("hog", "cnn", "haar"), default="hog",
                   help="face detector: dlib HOG (default), dlib CNN (slow), OpenCV Haar")
    p.add_argument("--upsample", type=int, default=1,
                   help="detector upsampling: 0 finds faces >= ~80 px, 1 >= ~40 px (default 1)")
    p.add_argument("--min-face-size", type=float, default=0.0,
                   help="skip faces whose detector box is smaller (pixels, default 0)")
    p.add_argument("--ext", default="png", choices=("png", "jpg", "webp"),
                   help="crop file format (default png)")


def run(args: argparse.Namespace) -> int:
    import csv
    import io
    from pathlib import Path

    from facemend.inference.align import align_ffhq, ffhq_quad
    from facemend.inference.detect import DetectOptions, DetectorError, detect_faces
    from facemend.io import ImageError, atomic_write_bytes, list_images, load_rgb, save_rgb

    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    if not in_dir.is_dir():
        print(f"{in_dir}: not a folder (give a folder of photos)")
        return 2
    if args.size < 16:
        print(f"--size {args.size}: too small (use 16 or more, e.g. 512)")
        return 2
    opts = DetectOptions(detector=args.detector, upsample=args.upsample,
                         min_face_size=args.min_face_size, landmarks68=True)
    photos = [p for p in list_images(in_dir) if out_dir.resolve() not in p.resolve().parents]
    rows: list[list[object]] = []
    failed = no_face = 0
    for path in photos:
        rel = path.relative_to(in_dir)
        try:
            img = load_rgb(path)
            faces = detect_faces(img, opts)
            if not faces:
                no_face += 1
                print(f"{path}: no face found")
            for i, face in enumerate(faces):
                assert face.landmarks68 is not None
                crop, _ = align_ffhq(img, face.landmarks68, args.size)
                name = rel.parent / f"{rel.stem}_{i:02d}.{args.ext}"
                save_rgb(out_dir / name, crop)
                _, qsize = ffhq_quad(face.landmarks68)
                rows.append([name.as_posix(), rel.as_posix(), i, f"{qsize:.1f}",
                             *(f"{v:.0f}" for v in face.box)])
        except ImageError as e:
            failed += 1
            print(e)
        except DetectorError as e:
            print(f"error: {e}")
            return 2
        except (OSError, ValueError, RuntimeError, MemoryError) as e:
            failed += 1
            print(f"{path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "source", "face_index", "source_face_size", "x0", "y0", "x1", "y1"])
    writer.writerows(rows)
    atomic_write_bytes(out_dir / "faces.csv", buf.getvalue().encode())
    print(f"aligned {len(rows)} faces from {len(photos) - failed} photos "
          f"({no_face} without a face, {failed} failed) -> {out_dir}")
    return 1 if failed else 0
