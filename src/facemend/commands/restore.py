"""`facemend restore`: photos in, restored photos out (DESIGN §4).

Outputs (GFPGAN/CodeFormer layout): OUT/cropped_faces/, OUT/restored_faces/, OUT/cmp/ (input |
restored, side by side), OUT/restored_imgs/, and OUT/report.json (per input: status, faces, boxes,
landmarks, identity similarity, guard actions, time, error). Inputs are never overwritten, every
output is written atomically, and a file that fails is reported in one line while the rest go on.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from facemend.commands.compat import add_compat_arguments, resolve_compat
from facemend.commands.restore_clip import add_video_arguments, clip_entry
from facemend.inference.video import VIDEO_EXTENSIONS

HELP = "restore faces in photos (files, folders, globs) or pre-aligned crops"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("-o", "--output", "--output_path", default="results",
                   help="output folder (default: results)")
    p.add_argument("--weights", default=None, help="weights folder (default: bundled default)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="torch (default) or onnx (a file from `facemend export --onnx`)")
    p.add_argument("--onnx", default=None, help="ONNX file for --backend onnx")
    p.add_argument("--aligned", "--has_aligned", action="store_true",
                   help="inputs are aligned face crops")
    p.add_argument("-s", "--upscale", type=float, default=1.0,
                   help="background upscale (default 1)")
    p.add_argument("--only-center-face", "--only_center_face", action="store_true",
                   help="restore only the centre face")
    p.add_argument("--face-index", type=int, default=None, help="restore only face I (largest=0)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--samples", type=int, default=1, help="restorations per face (default 1)")
    p.add_argument("--noise-scale", type=float, default=None,
                   help="0 = deterministic and most faithful, 1 = as trained (default; 0 for an "
                   "ONNX file exported with --noise zero); see -w for what it changes")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--ext", choices=["auto", "png", "jpg"], default="auto",
                   help="output format; auto keeps jpg for jpg inputs, else png")
    p.add_argument("--batch-size", type=int, default=8, help="faces per model call (default 8)")
    p.add_argument("--identity-guard", type=float, default=None, metavar="T",
                   help="blend back toward the input where the identity similarity (cosine of "
                   "dlib face embeddings; ~0.82 matches dlib's 0.6 same-person rule) is < T")
    p.add_argument("--no-identity", action="store_true",
                   help="skip the identity similarity (faster)")
    p.add_argument("--detector", choices=["hog", "cnn", "haar"], default="hog")
    p.add_argument("--smallest-face", type=float, default=1 / 20, metavar="F",
                   help="HOG: look for faces down to F x the photo's longer side (default 0.05; "
                   "the detector then scans a reduced copy, 2x faster on large photos); 0 = "
                   "every face the detector can find (group photos with small faces)")
    p.add_argument("--upsample", type=int, default=None,
                   help="detector upsampling (default: 2 for photos under 800 px, else 1)")
    p.add_argument("--no-colour-match", action="store_true", help="skip the colour match")
    p.add_argument("--face-size", type=int, default=None, metavar="N",
                   help="save cropped_faces/ and restored_faces/ at N x N (GFPGAN: 512); default: "
                   "each face at its own size in the output, at least the model's")
    p.add_argument("--no-detail", action="store_true",
                   help="the plain rule: the model's output replaces each face at the model's "
                   "resolution (default: faces keep their own size and the input's detail above "
                   "the model's band, and the model's change is weighed by how degraded the "
                   "face looks)")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-pixels", type=int, default=100_000_000, metavar="N",
                   help="refuse images over N pixels (decompression-bomb guard; default 100 MP,"
                   " 0 = no limit)")
    add_video_arguments(p)
    add_compat_arguments(p)


def run(args: argparse.Namespace) -> int:
    import time

    import torch
    from tqdm import tqdm

    from facemend.inference.files import (
        empty_folders,
        expand_inputs,
        output_names,
    )
    from facemend.io import load_image

    try:
        for note in resolve_compat(args):
            print(f"note: {note}", file=sys.stderr)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from facemend.inference.api import check_bounds

    if args.batch_size < 1:
        _say("error: --batch-size must be >= 1")
        return 2
    try:
        check_bounds(args.upscale, args.samples)
    except ValueError as e:
        _say(f"error: --{e}")
        return 2
    problem = check_output_folder(Path(args.output))
    if problem:
        _say(f"error: -o {problem}")
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = Path(args.output)
    files, missing = expand_inputs(args.inputs, args.recursive, skip_outputs_of=out)
    empty = empty_folders(args.inputs, args.recursive, skip_outputs_of=out)
    try:
        restorer = _load_restorer(args)
    except (ValueError, FileNotFoundError, ImportError) as e:
        _say(f"error: {e}")
        return 2
    model_info = restorer.info
    names = output_names(files, out)
    protected = {f.resolve() for f in files}
    report: dict = {"model": model_info, "settings": _settings(args), "files": []}
    failed = len(missing)
    for m in missing:
        _say(f"{m}: no such file, folder or matching glob")
        report["files"].append({"file": m, "status": "error", "error": "not found"})
    for folder, why in empty.items():
        failed += 1
        _say(f"{folder}: {why}")
        report["files"].append({"file": folder, "status": "error", "error": why})
    n_faces = 0
    done = 0
    try:
        for path in tqdm(files, unit="photo", disable=args.no_progress or len(files) < 2):
            if path.suffix.lower() in VIDEO_EXTENSIONS:  # a clip: commands/restore_clip.py
                entry = clip_entry(restorer, path, out, names[path], args, protected)
                failed += entry["status"] == "error"
                report["files"].append(entry)
                done += 1
                continue
            entry: dict = {"file": str(path), "status": "ok"}
            t0 = time.perf_counter()
            try:
                loaded = load_image(path, max_pixels=args.max_pixels or None)
                for note in loaded.warnings:
                    _say(f"note: {path}: {note}")
                if loaded.warnings:
                    entry["warnings"] = list(loaded.warnings)
                res = restorer.enhance(
                    loaded.rgb, aligned=args.aligned, only_center_face=args.only_center_face,
                    face_index=args.face_index, upscale=args.upscale, samples=args.samples,
                    face_size=args.face_size, upsample=args.upsample,
                )
                stem, ext = names[path], _ext(args.ext, path)
                written = _write_outputs(out, stem, ext, res, args.aligned, loaded, protected,
                                         args.suffix)
                entry.update(faces=[_face_json(f) for f in res.faces], outputs=written,
                             timings={k: round(v, 4) for k, v in res.timings.items()})
                if not res.faces:
                    entry["note"] = "no face found; the photo was only upscaled"
                    if args.face_index is not None and not args.aligned:
                        entry["note"] = (f"no face number {args.face_index} (faces are numbered "
                                         "0, 1, ... largest first); the photo was only upscaled")
                        _say(f"note: {path}: {entry['note']}")
                n_faces += len(res.faces)
                for f in res.faces:
                    for k, action in enumerate(f.guard):
                        if action != "none":
                            print(one_line(f"{path}: face {f.index} sample {k}: identity "
                                           f"{f.identity[k]:.3f} < {args.identity_guard}: "
                                           f"{action}"))
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
                failed += 1
                text = str(e) or type(e).__name__
                if not isinstance(e, ValueError | OSError):  # ImageError is a ValueError
                    text = f"internal error ({type(e).__name__}: {text})"
                msg = _error_line(path, text)
                _say(msg)
                entry.update(status="error", error=msg)
            entry["time_s"] = round(time.perf_counter() - t0, 4)
            report["files"].append(entry)
            done += 1
    except KeyboardInterrupt:
        report["files"] += [{"file": str(p), "status": "not processed"}
                            for p in files[done:]]
        where = _write_report(report, out, files)
        _say(f"interrupted: {where} lists the {done} photo(s) done and the "
             f"{len(files) - done} not processed")
        return 130
    _write_report(report, out, files)
    ok = len(files) - (failed - len(missing) - len(empty))
    print(f"{len(files) + len(missing) + len(empty)} input(s): {ok} restored ({n_faces} faces), "
          f"{failed} failed; results in {out}")
    return 1 if failed else 0


def _write_report(report: dict, out: Path, files: list[Path]) -> Path:
    """Write report.json (strict JSON) atomically into `out`, never over an input; its path."""
    import json

    from facemend.inference.files import protected_path
    from facemend.io import atomic_write_bytes

    where = protected_path(out / "report.json", files)
    text = json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(where, text.encode())
    return where


def check_output_folder(out: Path) -> str | None:
    """Why `out` cannot be the output folder (one line), or None after making sure it exists
    and a file can be created in it."""
    import os
    import tempfile

    if out.exists() and not out.is_dir():
        return f"{out}: is a file, not a folder"
    parent = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if parent is not None:
        return f"{out}: {parent} is a file, so no folder can be made under it"
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".facemend-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"{out}: cannot write there ({e.strerror or type(e).__name__})"
    return None


def one_line(text: str) -> str:
    """`text` with its control characters (newlines in a file name too) escaped as repr does."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _say(text: str) -> None:
    """An error or a note: one line on stderr."""
    print(one_line(text), file=sys.stderr)


def _error_line(path, text: str) -> str:
    """'<path>: <first line of the problem>', the path whole even when it holds a newline."""
    name = str(path)
    if text.startswith(name):
        text = text[len(name):].removeprefix(":").lstrip()
    first = (text.replace(name, "\0").splitlines() or [""])[0].replace("\0", name)
    return f"{name}: {first}"


def _load_restorer(args: argparse.Namespace):
    """The FaceRestorer (torch weights or ONNX file) for the command's options."""
    from facemend.inference.api import FaceRestorer

    restorer = FaceRestorer(
        args.weights, backend=args.backend, onnx=args.onnx, device=args.device,
        noise_scale=args.noise_scale, seed=args.seed, identity=not args.no_identity,
        identity_guard=args.identity_guard, detector=args.detector,
        smallest_face=args.smallest_face,
        colour_match=not args.no_colour_match, detail=not args.no_detail,
        batch_size=args.batch_size,
    )
    args.noise_scale = restorer.noise_scale
    return restorer


def _json_safe(value):
    """`value` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _settings(args: argparse.Namespace) -> dict:
    keys = ("aligned", "upscale", "only_center_face", "face_index", "seed", "samples",
            "noise_scale", "batch_size", "identity_guard", "detector", "face_size", "no_detail")
    return {k: getattr(args, k) for k in keys}


def _ext(choice: str, path) -> str:
    if choice != "auto":
        return choice
    return "jpg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"


def _face_json(f) -> dict:
    return {"index": f.index, "box": [round(float(v), 2) for v in f.box],
            "landmarks5": np.round(f.landmarks5, 2).tolist() if f.landmarks5 is not None else None,
            "source_size": round(float(f.source_size), 2),
            "identity": [None if s is None else round(s, 4) for s in f.identity],
            "identity_final": [None if s is None else round(s, 4) for s in f.identity_final],
            "guard": list(f.guard),
            "size": int(f.cropped.shape[0]),  # side of the restored crop (the face's own size)
            "trust": list(f.trust)}  # per sample, share of the model's change kept


def _write_outputs(out, stem: str, ext: str, res, aligned: bool, loaded, protected,
                   suffix: str | None = None) -> list[str]:
    """Write crops, restored faces, comparisons and whole images (with the input's alpha and ICC
    profile; orientation already in the pixels); returns the paths written. `suffix` (GFPGAN's
    and CodeFormer's --suffix) is added to the names of restored faces and whole images."""
    from facemend.inference.api import resize_face
    from facemend.inference.files import check_not_input
    from facemend.io import save_image

    def save_rgb(p, img, **kw) -> None:
        check_not_input(p, protected)
        save_image(p, img, **kw)

    written = []
    multi = len(res.images) > 1
    tag = f"_{suffix}" if suffix else ""
    for f in res.faces:
        p = out / "cropped_faces" / f"{stem}_{f.index:02d}.png"
        cropped = resize_face(f.cropped, res.face_size)
        save_rgb(p, cropped)
        written.append(str(p))
        for k, face in enumerate(f.restored):
            face = resize_face(face, res.face_size)
            sample = f"_s{k}" if multi else ""
            p = out / "restored_faces" / f"{stem}_{f.index:02d}{sample}{tag}.png"
            save_rgb(p, face)
            p2 = out / "cmp" / f"{stem}_{f.index:02d}{sample}.png"
            save_rgb(p2, np.concatenate([cropped, face], axis=1))
            written += [str(p), str(p2)]
    if not aligned:
        for k, image in enumerate(res.images):
            sample = f"_s{k}" if multi else ""
            p = out / "restored_imgs" / f"{stem}{sample}{tag}.{ext}"
            save_rgb(p, image, icc_profile=loaded.icc_profile, alpha=loaded.alpha)
            written.append(str(p))
    return written

