"""`facemend embed`: 128-D dlib face descriptors of photos (largest face), or compare two faces."""

from __future__ import annotations

import argparse
import sys

HELP = ("128-D face descriptors (dlib's face ResNet, ported to torch) of the largest face in each "
        "image, to JSON; or --compare two images (distance < 0.6 = same person)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos (or aligned crops)")
    p.add_argument("--out", metavar="JSON",
                   help="write {embeddings: [...], failed: [...]} here (default without "
                   "--compare: print it; failures then go to stderr)")
    p.add_argument("--compare", action="store_true",
                   help="with two images: print their distance and dlib's same-person verdict")
    p.add_argument("--aligned", action="store_true",
                   help="inputs are FFHQ-aligned face crops: skip detection and landmarks")
    p.add_argument("--backend", choices=("torch", "dlib"), default="torch",
                   help="torch port (default) or dlib's own network, for checking")
    p.add_argument("--device", default="cpu", help="torch device (torch backend)")
    p.add_argument("--upsample", type=int, default=1,
                   help="times the HOG detector upsamples the photo to find small faces")


def _embed_one(path: str, args: argparse.Namespace, tools: dict) -> list[float]:
    """Descriptor of the largest face in one image; ValueError with a reason when there is none."""
    import numpy as np
    import torch

    from facemend.faces.chip import aligned_to_chip, get_face_chip
    from facemend.io import load_rgb, to_tensor

    img = load_rgb(path)  # (H, W, 3) uint8; ImageError on bad files
    if args.aligned:
        if img.shape[0] != img.shape[1]:
            raise ValueError(f"--aligned expects square crops, got {img.shape[1]}x{img.shape[0]}")
        with torch.no_grad():
            chip = aligned_to_chip(to_tensor(img).to(args.device))  # (1, 3, 150, 150)
            if args.backend == "torch":
                return tools["net"](chip)[0].tolist()
        chip_u8 = chip[0].round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
        return list(tools["dlib_net"].compute_face_descriptor(np.ascontiguousarray(chip_u8)))
    dets = tools["detector"](img, args.upsample)
    if len(dets) == 0:
        raise ValueError("no face found (dlib HOG detector); try --upsample 2 or a larger photo")
    box = max(dets, key=lambda r: r.area())
    shape = tools["landmarks"](img, box)
    if args.backend == "dlib":
        return list(tools["dlib_net"].compute_face_descriptor(img, shape))
    lm = torch.tensor([[(shape.part(i).x, shape.part(i).y) for i in range(5)]],
                      dtype=torch.float64)  # (1, 5, 2)
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        chip = get_face_chip(x.to(args.device), lm.to(args.device), quantize=True)
        return tools["net"](chip)[0].tolist()


def run(args: argparse.Namespace) -> int:
    import json
    import math
    from pathlib import Path

    import dlib

    from facemend.faces.dlib_format import FaceModelError
    from facemend.faces.dlib_resnet import (
        SAME_PERSON_THRESHOLD,
        default_model_path,
        load_face_net,
    )
    from facemend.io import ImageError, atomic_write_bytes

    if args.compare and len(args.images) != 2:
        print(f"error: --compare needs exactly two images, got {len(args.images)}")
        return 2
    try:
        model = default_model_path()
        tools: dict = {}
        if args.backend == "torch":
            tools["net"] = load_face_net(model, args.device)
        else:
            tools["dlib_net"] = dlib.face_recognition_model_v1(str(model))
        if not args.aligned:
            tools["detector"] = dlib.get_frontal_face_detector()
            tools["landmarks"] = dlib.shape_predictor(
                str(model.parent / "shape_predictor_5_face_landmarks.dat"))
    except (FaceModelError, RuntimeError) as e:
        print(f"error: {e}")
        return 2

    embeddings, failed = [], []
    for path in args.images:
        try:
            emb = _embed_one(path, args, tools)
            embeddings.append({"file": str(path), "embedding": [float(v) for v in emb]})
        except ImageError as e:
            failed.append({"file": str(path), "reason": str(e).removeprefix(f"{path}: ")})
        except ValueError as e:
            failed.append({"file": str(path), "reason": str(e)})
    to_stdout = not args.out and not args.compare  # stdout then holds only the JSON
    for f in failed:
        print(f"{f['file']}: {f['reason']}", file=sys.stderr if to_stdout else sys.stdout)

    doc = {"model": model.name, "backend": args.backend, "embeddings": embeddings,
           "failed": failed}
    if args.out:
        atomic_write_bytes(Path(args.out), (json.dumps(doc, indent=1) + "\n").encode())
        print(f"wrote {len(embeddings)} embeddings ({len(failed)} failed) to {args.out}")
    elif to_stdout:
        print(json.dumps(doc, indent=1))
    if args.compare:
        if failed:
            return 1
        a, b = (e["embedding"] for e in embeddings)
        dist = math.dist(a, b)
        same = dist < SAME_PERSON_THRESHOLD
        verdict = "same person" if same else "different people"
        print(f"distance {dist:.4f}: {verdict} (dlib rule: < {SAME_PERSON_THRESHOLD})")
    return 1 if failed else 0
