"""Peak memory of a whole-photo restore: a synthetic 6000x4000 photo with 30 real faces.

The photo is built by pasting real face crops (`shared/data/hq512`, else aligned faces of
`examples/photos`), resized to ~300 px, on a smooth noisy canvas in a jittered grid. The restore
runs in a child process (`python -m facemend.bench.memory ...`) so that its peak RSS (VmHWM,
which includes the Python + torch baseline) is its own. Faces are streamed through the model in
batches, so the peak is the photo, its float32 canvas and one batch of activations, whatever the
face count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from facemend.bench.machine import peak_rss_mb

REPO = Path(__file__).resolve().parents[3]
HQ512 = Path(os.environ.get("FACEMEND_SHARED", REPO.parent / "shared")) / "data" / "hq512"
EXAMPLES = REPO / "examples" / "photos"


def face_sources(limit: int = 30) -> list[np.ndarray]:
    """Up to `limit` (S, S, 3) uint8 aligned face crops: hq512 files, else example photos."""
    from facemend.io import list_images, load_rgb

    if HQ512.is_dir():
        return [load_rgb(p) for p in list_images(HQ512)[:limit]]
    from facemend.inference.align import align_face
    from facemend.inference.detect import detect_faces

    crops = []
    for path in list_images(EXAMPLES):
        img = load_rgb(path)
        crops += [align_face(img, f.landmarks5, 512)[0] for f in detect_faces(img)]
    return crops[:limit]


def synthetic_photo(
    width: int = 6000, height: int = 4000, faces: int = 30, face_px: int = 300, seed: int = 0
) -> np.ndarray:
    """(height, width, 3) uint8 photo with `faces` real faces of ~face_px pasted in a grid."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height:8, 0:width:8].astype(np.float32)  # built at 1/8 scale, so the
    small = np.stack([90 + 60 * xx / width, 110 + 40 * yy / height,  # full-size photo is the
                      130 - 30 * xx / width], axis=-1)  # only large array (uint8)
    small += rng.normal(0, 4, size=small.shape[:2] + (1,)).astype(np.float32)  # some texture
    small = np.clip(small, 0, 255).astype(np.uint8)
    photo = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    sources = face_sources(faces)
    assert sources, "no face crops found (need shared/data/hq512 or examples/photos)"
    cols = int(np.ceil(np.sqrt(faces * width / height)))
    rows = int(np.ceil(faces / cols))
    cw, ch = width // cols, height // rows
    for i in range(faces):
        r, c = divmod(i, cols)
        side = int(face_px * rng.uniform(0.9, 1.1))
        face = cv2.resize(sources[i % len(sources)], (side, side), interpolation=cv2.INTER_AREA)
        x0 = c * cw + int(rng.uniform(0, max(cw - side, 1)))
        y0 = r * ch + int(rng.uniform(0, max(ch - side, 1)))
        photo[y0 : y0 + side, x0 : x0 + side] = face[: height - y0, : width - x0]
    return photo


def restore_in_child(
    model: str, threads: int, width: int = 6000, height: int = 4000, faces: int = 30,
    config: str | None = None, weights: str | None = None, timeout: float = 900.0,
) -> dict:
    """Run `measure` in a fresh process; returns its JSON (peak_rss_mb, timings, faces)."""
    cmd = [sys.executable, "-m", "facemend.bench.memory", "--model", model,
           "--threads", str(threads), "--width", str(width), "--height", str(height),
           "--faces", str(faces)]
    if config:
        cmd += ["--config", config]
    if weights:
        cmd += ["--weights", weights]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """Build the photo and restore it with the named model; peak RSS of this process."""
    import torch

    from facemend.bench.models import build_facemend
    from facemend.inference.detect import DetectOptions
    from facemend.inference.restore import model_restorer, restore_photo

    torch.set_num_threads(args.threads)
    photo = synthetic_photo(args.width, args.height, args.faces)
    G, source = build_facemend(args.model, args.config, args.weights)
    t = time.perf_counter()
    res = restore_photo(photo, model_restorer(G, 1.0, 0), G.cfg.resolution,
                        detect=DetectOptions(upsample=0), batch_size=4)
    total = time.perf_counter() - t
    rss = peak_rss_mb()
    return {"photo": f"{args.width}x{args.height}", "faces_placed": args.faces,
            "faces_restored": len(res.faces), "model": args.model, "model_source": source,
            "resolution": G.cfg.resolution, "batch_size": 4, "peak_rss_mb": round(rss, 1),
            "limit_mb": 4096, "within_limit": rss < 4096, "seconds": round(total, 2),
            "timings_ms": {k: round(v * 1000, 1) for k, v in res.timings.items()}}


def main() -> None:
    """Child-process entry: print one JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="default")
    p.add_argument("--config", default=None)
    p.add_argument("--weights", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--width", type=int, default=6000)
    p.add_argument("--height", type=int, default=4000)
    p.add_argument("--faces", type=int, default=30)
    print(json.dumps(measure(p.parse_args())))


if __name__ == "__main__":
    main()
