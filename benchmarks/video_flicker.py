"""Flicker of restored clips against the input's and against frame-by-frame restoration.

A photo from examples/photos is made into a still clip and a panned / zoomed one (each frame
JPEG re-compressed at a varying quality, then H.264), restored with tracking (the default) and
frame by frame, and the flicker of each (`facemend.inference.flicker`) is measured along the
tracked, smoothed landmarks. "colour per frame" is tracked restoration with each frame's face
matched to that frame's own colour statistics instead of the track's running average.
`--pulse L` makes the input's brightness alternate by +-L levels from frame to frame;
`--no-detail` pastes the model's output instead of its change to the input. Usage:

    OMP_NUM_THREADS=1 python benchmarks/video_flicker.py [--frames 48] [--size 320x240]
        [--pulse L] [--no-detail]
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
    ap.add_argument("--pulse", type=int, default=0, metavar="L")
    ap.add_argument("--no-detail", action="store_true")
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x"))
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    restorer = FaceRestorer(a.weights, identity=False, detail=not a.no_detail)
    print("| clip | input | tracked (default) | colour per frame | frame by frame |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, motion in (("still", 0.0), ("panned + zoomed", 1.0)):
            frames = clip_frames(photo, a.frames, size, motion)
            if a.pulse:
                frames = [np.clip(f.astype(np.int16) + (a.pulse if i % 2 else -a.pulse), 0, 255)
                          .astype(np.uint8) for i, f in enumerate(frames)]
            clip = write_clip(Path(tmp) / "in.mp4", frames)
            tracked = restore_video(restorer, clip, Path(tmp) / "a.mp4",
                                    VideoOptions(record_landmarks=True), progress=False)
            per_frame = restore_video(restorer, clip, Path(tmp) / "c.mp4",
                                      VideoOptions(colour_rate=1.0), progress=False)
            framewise = restore_video(restorer, clip, Path(tmp) / "b.mp4",
                                      VideoOptions(temporal=False), progress=False)
            lms = tracked.landmarks
            values = [flicker(frames_of(p), lms)
                      for p in (clip, tracked.output, per_frame.output, framewise.output)]
            print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")


if __name__ == "__main__":
    main()
