"""GFPGAN and CodeFormer spellings of `facemend restore` options (inference_gfpgan.py and
inference_codeformer.py), so that their command lines run here.

Flags whose meaning is the same are plain aliases of facemend's options (`-i`, `-s`,
`--has_aligned`, `--only_center_face`, `--suffix`, `--ext`, ...). `-w` / `--weight` /
`--fidelity_weight` W maps onto the fidelity control of the facemend model: noise scale 1 - W.
Flags that name something facemend does not have (GFPGAN versions, Real-ESRGAN, RetinaFace)
are accepted and explained in one line each, and the run goes on with what facemend has.
"""

from __future__ import annotations

import argparse

# The `-w` help states what the fidelity control changes with the bundled weights, measured on
# the faces of examples/photos/obama_and_biden.jpg and john2.jpg (restored faces, 0-255 levels).
FIDELITY_HELP = (
    "GFPGAN/CodeFormer fidelity weight W in [0, 1]: 1 = most faithful. Sets --noise-scale "
    "to 1 - W. With the bundled weights the noise hardly matters: --noise-scale 0 vs 1 "
    "changes the restored faces by {mean} levels (of 255) on average, at most {max}; "
    "--samples 3 differ by at most {spread} levels (measured on the faces of "
    "examples/photos/obama_and_biden.jpg and john2.jpg)"
)
MEASURED = {"mean": "0.05-0.08", "max": "2", "spread": "2"}


def add_compat_arguments(p: argparse.ArgumentParser) -> None:
    """The spellings that are not already aliases of facemend's own options."""
    g = p.add_argument_group(
        "GFPGAN / CodeFormer spellings",
        "accepted so their command lines run; -o/--output_path, -s/--upscale, --has_aligned, "
        "--only_center_face and --ext are aliases of the options above",
    )
    g.add_argument("-i", "--input", "--input_path", dest="input_flags", action="extend",
                   nargs="+", default=[], metavar="INPUT",
                   help="image files, folders or globs (same as the positional INPUT)")
    g.add_argument("-w", "--weight", "--fidelity_weight", dest="fidelity_weight", type=float,
                   default=None, metavar="W", help=FIDELITY_HELP.format(**MEASURED))
    g.add_argument("--suffix", default=None,
                   help="add _SUFFIX to the names of restored faces and restored images")
    g.add_argument("-v", "--version", dest="gfpgan_version", default=None, metavar="V",
                   help="GFPGAN model version: facemend has its own model (choose it with "
                   "--weights); noted and ignored")
    g.add_argument("--bg_upsampler", default=None, metavar="NAME",
                   help="none or lanczos: the background is upscaled with Lanczos (as GFPGAN "
                   "and CodeFormer do without Real-ESRGAN); realesrgan: not bundled, noted")
    g.add_argument("--bg_tile", type=int, default=None, metavar="N",
                   help="tile size of a neural background upsampler: none is bundled; ignored")
    g.add_argument("--face_upsample", action="store_true",
                   help="CodeFormer's Real-ESRGAN pass over restored faces: not bundled; noted")
    g.add_argument("--detection_model", default=None, metavar="NAME",
                   help="dlib = --detector cnn (dlib's CNN, as in CodeFormer); RetinaFace and "
                   "YOLOv5 are not bundled: --detector is used, noted")
    g.add_argument("--draw_box", action="store_true",
                   help="boxes are not drawn; every face's box is in OUT/report.json")


def resolve_compat(args: argparse.Namespace) -> list[str]:
    """Fold the GFPGAN/CodeFormer spellings into facemend's options, in place.

    Returns one note per flag that cannot mean here what it means there; raises ValueError
    for contradictory options (the message is the one line to print).
    """
    notes: list[str] = []
    args.inputs = [*args.inputs, *args.input_flags]
    if not args.inputs:
        raise ValueError("no input given: facemend restore INPUT ... (or -i INPUT)")
    w = args.fidelity_weight
    if w is not None:
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"-w/--fidelity_weight must be in [0, 1], got {w}")
        if args.noise_scale is not None and abs(args.noise_scale - (1.0 - w)) > 1e-9:
            raise ValueError(f"-w {w} means --noise-scale {1.0 - w:g}, but --noise-scale "
                             f"{args.noise_scale:g} was given too: give one of them")
        args.noise_scale = 1.0 - w
    if args.identity_guard is not None and args.no_identity:
        raise ValueError("--identity-guard needs the identity similarity that --no-identity "
                         "switches off: drop one of them")
    if args.suffix is not None and (not args.suffix or "/" in args.suffix or "\\" in args.suffix):
        raise ValueError(f"--suffix must be a non-empty name without slashes, got {args.suffix!r}")
    if args.gfpgan_version is not None:
        notes.append(f"-v {args.gfpgan_version}: GFPGAN versions do not apply; restoring with "
                     "the facemend weights (--weights DIR chooses others)")
    bg = (args.bg_upsampler or "none").lower()
    if bg == "realesrgan":
        notes.append("--bg_upsampler realesrgan: Real-ESRGAN is not bundled (nothing is "
                     "downloaded); the background is upscaled with Lanczos")
    elif bg not in ("none", "lanczos"):
        raise ValueError(f"--bg_upsampler {args.bg_upsampler!r}: choose none, lanczos or "
                         "realesrgan")
    if args.bg_tile is not None:
        notes.append("--bg_tile: no neural background upsampler is bundled; ignored")
    if args.face_upsample:
        notes.append("--face_upsample: no face upsampler (Real-ESRGAN) is bundled; faces are "
                     "pasted as restored")
    if args.detection_model is not None:
        if args.detection_model.lower() == "dlib":
            args.detector = "cnn"
        else:
            notes.append(f"--detection_model {args.detection_model}: not bundled; using "
                         f"--detector {args.detector}")
    if args.draw_box:
        notes.append("--draw_box: boxes are not drawn; they are in report.json")
    return notes
