"""Flicker of restored clips against the input's and against frame-by-frame restoration.

A photo from examples/photos is made into a still clip and a panned / zoomed one (each frame
JPEG re-compressed at a varying quality, then H.264), restored with tracking (the default) and
frame by frame, and the flicker of each (`facemend.inference.flicker`) is measured along the
tracked, smoothed landmarks. Usage:

    OMP_NUM_THREADS=1 python benchmarks/video_flicker.py [--frames 48] [--size 320x240]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from facemend.bench.clips import clip_frames, write_clip
from facemend.inference.api import FaceRestorer
from facemend.inference.flicker import flicker, frames_of
from facemend.inference.video_restore import VideoOptions, restore_video

PHOTO = Path(__file__).resolve().parents[1] / "examples" / "photos" / "john2.jpg"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--weights", default=None)
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x"))
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    restorer = FaceRestorer(a.weights, identity=False)
    print("| clip | input | tracked (default) | frame by frame |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, motion in (("still", 0.0), ("panned + zoomed", 1.0)):
            clip = write_clip(Path(tmp) / "in.mp4", clip_frames(photo, a.frames, size, motion))
            tracked = restore_video(restorer, clip, Path(tmp) / "a.mp4",
                                    VideoOptions(record_landmarks=True), progress=False)
            framewise = restore_video(restorer, clip, Path(tmp) / "b.mp4",
                                      VideoOptions(temporal=False), progress=False)
            lms = tracked.landmarks
            values = [flicker(frames_of(p), lms)
                      for p in (clip, tracked.output, framewise.output)]
            print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")


if __name__ == "__main__":
    main()
