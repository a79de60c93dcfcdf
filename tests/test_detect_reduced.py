"""Detection on a reduced copy (`detection_plan`): the same faces as the full pyramid."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from facemend.inference.detect import DetectOptions, detect_faces, detection_plan
from facemend.io import load_rgb

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "photos"
STEP = 5 / 6  # dlib's pyramid step


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("shape, up, expected", [
    ((832, 1480, 3), 1, (STEP**3, 1)),  # obama1: smallest face 74 px, found from 69 px
    ((1868, 1382, 3), 1, (2 * STEP**4, 0)),  # shrunk below 1/2: upsampling dropped instead
    ((214, 300, 3), 2, (1.0, 2)),  # small photo: 20 px faces are already the limit
    ((374, 630, 3), 2, (STEP**2, 2)),
])
def test_plan_known_values(shape: tuple[int, ...], up: int, expected: tuple[float, int]) -> None:
    factor, u = detection_plan(shape, DetectOptions(upsample=up))
    assert u == expected[1] and factor == pytest.approx(expected[0])


@pytest.mark.parametrize("side", [200, 640, 1000, 1480, 3000, 6000])
@pytest.mark.parametrize("up", [0, 1, 2])
def test_plan_is_the_coarsest_that_finds_the_smallest_face(side: int, up: int) -> None:
    opts = DetectOptions(upsample=up)
    factor, u = detection_plan((side // 2, side, 3), opts)
    scale = factor * 2**u
    target = opts.smallest_face * side
    assert factor <= 1.0 and u <= up and (u == 0 or factor > 0.5)
    assert 80 / scale <= max(target, 80 / 2**up) * (1 + 1e-9)  # smallest face still found
    if scale < 2**up:  # reduced: one pyramid step more would miss it
        assert 80 / (scale * STEP) > target
    assert detection_plan((side // 2, side, 3), DetectOptions(upsample=up, smallest_face=0)) \
        == (1.0, up)
    assert detection_plan((side // 2, side, 3), DetectOptions("haar", upsample=up)) == (1.0, up)


@pytest.mark.parametrize("name, up", [
    ("obama1.jpg", 1), ("obama_and_biden.jpg", 1), ("obama_and_biden_lowq.jpg", 1),
    ("john2.jpg", 2), ("kit_with_rose.jpg", 2),
])
def test_reduced_copy_finds_the_faces_of_the_full_pyramid(name: str, up: int) -> None:
    img = load_rgb(EXAMPLES / name)
    full = detect_faces(img, DetectOptions(upsample=up, smallest_face=0))
    reduced = detect_faces(img, DetectOptions(upsample=up))
    if name != "obama_and_biden_lowq.jpg":  # 300 px: nothing to reduce
        assert detection_plan(img.shape, DetectOptions(upsample=up))[0] < 1.0
    assert len(full) == len(reduced) >= 1
    for a in full:
        b = max(reduced, key=lambda f: iou(a.box, f.box))
        assert iou(a.box, b.box) > 0.5  # a box may land one pyramid level off (90 vs 110 px)
        # landmarks are fitted on the full photo: within 3 % of the face (measured <= 2.2 %)
        assert np.abs(a.landmarks5 - b.landmarks5).max() <= max(0.03 * a.size, 1.0), name


def test_plan_scale_is_a_whole_number_of_pyramid_steps() -> None:
    for side in (700, 1200, 2500):
        factor, u = detection_plan((side, side, 3), DetectOptions(upsample=1))
        k = math.log(factor * 2**u / 2) / math.log(STEP)
        assert abs(k - round(k)) < 1e-9
