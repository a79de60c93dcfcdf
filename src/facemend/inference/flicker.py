"""Flicker of the faces of a clip: how much each face changes from one frame to the next.

For each face track and each pair of consecutive frames that both hold it, both frames are
warped to the aligned face crop by their own (smoothed) landmarks, so that the face's motion
and the camera's do not count, and the mean absolute difference (0-255 scale) of the two crops
is taken inside the face mask. The flicker of a clip is the mean over all such pairs. The same
landmarks are used for the input and for its restorations, so the numbers compare directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from facemend.inference.align import align_face
from facemend.inference.paste import face_mask

CROP = 128  # side of the aligned crop the change is measured on


def frames_of(path: str | Path) -> Iterable[np.ndarray]:
    """The upright RGB frames of a clip, one at a time."""
    from facemend.inference.video import Frame, VideoReader

    reader = VideoReader(path)
    try:
        for item in reader.items():
            if isinstance(item, Frame):
                yield item.rgb
    finally:
        reader.close()


def flicker(frames: Iterable[np.ndarray], landmarks: list[dict[int, np.ndarray]],
            scale: float = 1.0) -> float:
    """Mean absolute change of the aligned faces between consecutive frames (0-255).

    landmarks[i] maps a track id to its (5, 2) landmarks in frame i of the input; `scale` maps
    them onto frames of another size (an upscaled output).
    """
    weights = face_mask(CROP)
    weights = weights / weights.sum()
    prev: dict[int, np.ndarray] = {}
    total, pairs = 0.0, 0
    for i, img in enumerate(frames):
        if i >= len(landmarks):
            break
        crops = {tid: align_face(img, lm * scale, CROP)[0].astype(np.float32)
                 for tid, lm in landmarks[i].items()}
        for tid, crop in crops.items():
            if tid in prev:
                diff = np.abs(crop - prev[tid]).mean(axis=2)
                total += float((diff * weights).sum())
                pairs += 1
        prev = crops
    if not pairs:
        raise ValueError("no face seen in two consecutive frames")
    return total / pairs
