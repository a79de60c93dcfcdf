"""Face-shaped paste mask from 68 landmarks: 1 on the face, 0 away from it, smooth."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facemend.inference.align import align_face, apply_affine
from facemend.inference.detect import DetectOptions, detect_faces
from facemend.inference.mask import face_outline, face_shaped_mask, paste_mask
from facemend.inference.paste import face_mask
from facemend.io import load_rgb

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "photos"
SIZE = 128


@pytest.fixture(scope="module")
def faces() -> list[tuple[np.ndarray, np.ndarray]]:
    """(photo -> crop matrix, 68 landmarks in the photo) for every face of two photos."""
    out = []
    for name in ("obama_and_biden.jpg", "john2.jpg"):
        img = load_rgb(EXAMPLES / name)
        for f in detect_faces(img, DetectOptions(landmarks68=True)):
            _, m = align_face(img, f.landmarks5, SIZE)
            out.append((m, f.landmarks68))
    assert len(out) == 4
    return out


def signed_distance(outline: np.ndarray, size: int) -> np.ndarray:
    """(size, size) distance of each pixel centre to the outline (> 0 inside)."""
    contour = outline.reshape(-1, 1, 2).astype(np.float32)
    return np.array([[cv2.pointPolygonTest(contour, (float(x), float(y)), True)
                      for x in range(size)] for y in range(size)])


def test_mask_is_one_on_the_face_and_zero_away_from_it(faces) -> None:
    sigma, square = SIZE / 40, face_mask(SIZE)
    for m, lm68 in faces:
        pts = apply_affine(m, lm68)
        mask = paste_mask(SIZE, m, lm68)
        assert mask.shape == (SIZE, SIZE) and mask.dtype == np.float32
        d = signed_distance(face_outline(pts), SIZE)
        assert (d >= 0).sum() > 0.25 * SIZE * SIZE  # the face is a good part of the crop
        inside = d >= 0  # the chin can reach the crop's bottom edge: the square caps it there
        assert np.all(mask[inside] >= np.minimum(0.95, square[inside] - 1e-6))
        assert (mask[inside] >= 0.95).mean() > 0.9
        far = d < -(5 * sigma + 1)
        assert far.sum() > 0.1 * SIZE * SIZE and mask[far].max() <= 0.03
        x, y = np.round(pts).astype(int).clip(0, SIZE - 1).T  # every landmark, jaw included
        assert np.all(mask[y, x] >= np.minimum(0.9, square[y, x]))


def test_mask_is_smooth_and_inside_the_square(faces) -> None:
    square = face_mask(SIZE)
    bound = 1 / (min(SIZE / 40, SIZE / 48) * np.sqrt(2 * np.pi))  # a Gaussian-blurred step
    for m, lm68 in faces:
        mask = paste_mask(SIZE, m, lm68)
        assert np.all(mask <= square + 1e-6) and mask[[0, -1], :].max() < 0.002
        gy, gx = np.gradient(mask.astype(np.float64))
        assert np.hypot(gx, gy).max() <= 1.1 * bound
        # hair and background that the square mask pastes are kept from the photo: measured
        # 10-15 % of the crop, and at most 40 % of what the square pastes in its top corners
        assert ((square > 0.5) & (mask < 0.05)).mean() > 0.08
        for corner in (mask[: SIZE // 4, : SIZE // 4], mask[: SIZE // 4, -SIZE // 4 :]):
            assert corner.mean() < 0.5 * square[: SIZE // 4, : SIZE // 4].mean()


def test_without_landmarks_the_square_is_used() -> None:
    assert paste_mask(SIZE) is face_mask(SIZE)
    assert paste_mask(SIZE, np.eye(2, 3), None) is face_mask(SIZE)


def test_outline_known_shape() -> None:
    # a synthetic face: jaw on the lower half of a circle, brows on a line above the centre
    t = np.linspace(np.pi, 0, 17)
    jaw = np.stack([64 + 40 * np.cos(t), 64 + 40 * np.sin(t)], axis=1)  # y down: lower half
    brows = np.stack([np.linspace(30, 98, 10), np.full(10, 50.0)], axis=1)
    pts = np.zeros((68, 2))
    pts[:17], pts[17:27], pts[27:] = jaw, brows, (64, 70)
    outline = face_outline(pts)
    chin_to_brow = 50.0 - 104.0  # brows' mean y - chin y
    assert outline[:, 1].min() == pytest.approx(50.0 + 0.4 * chin_to_brow)  # raised brows
    assert outline[:, 1].max() == pytest.approx(104.0)  # the chin
    mask = face_shaped_mask(SIZE, pts)
    assert mask[60, 64] > 0.99 and mask[5, 64] < 0.01 and mask[64, 125] < 0.01
