"""Face-shaped paste masks from the 68 iBUG landmarks (jaw 0-16, brows 17-26).

A restored crop pasted through a feathered square leaves a soft square patch around the face
(hair, background and neck of the crop change too). The face-shaped mask covers the face
itself: the convex hull of the jaw line and the brows, with the brows raised to the forehead,
grown by `grow` sigma and Gaussian-feathered, times the square mask so that it is still zero
at the crop's border. Without landmarks the square mask is the fallback.
"""

from __future__ import annotations

import numpy as np

from facemend.inference.align import apply_affine
from facemend.inference.paste import face_mask

JAW = slice(0, 17)
BROWS = slice(17, 27)
FOREHEAD = 0.4  # brows are raised by this fraction of the chin-to-brow height (below hair)


def face_outline(points68: np.ndarray, forehead: float = FOREHEAD) -> np.ndarray:
    """(K, 2) float32 convex outline of the face: jaw + brows raised to the forehead."""
    import cv2

    pts = np.asarray(points68, np.float64)
    assert pts.shape == (68, 2), pts.shape
    brows, chin = pts[BROWS], pts[8]
    up = brows.mean(axis=0) - chin  # chin -> brows: the face's upward direction and height
    raised = brows + forehead * up
    hull = cv2.convexHull(np.concatenate([pts[JAW], brows, raised]).astype(np.float32))
    return hull.reshape(-1, 2)


def face_shaped_mask(
    size: int, points68: np.ndarray, sigma_frac: float = 1 / 40, grow: float = 2.0,
) -> np.ndarray:
    """(size, size) float32 mask in [0, 1]: >= 0.97 on the face outline of `points68` (crop
    coordinates), feathered with sigma = sigma_frac * size, below 0.03 from (2 grow) sigma
    outside it, and never above the square mask `face_mask(size)` (zero at the crop border)."""
    import cv2

    sigma = max(sigma_frac * size, 0.5)
    outline = face_outline(points68)
    shift = 4  # fixed-point bits: sub-pixel polygon vertices
    hull = np.round(outline * (1 << shift)).astype(np.int32)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255, lineType=cv2.LINE_AA, shift=shift)
    radius = int(np.ceil(grow * sigma))
    if radius > 0:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, disk)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigma,
                            borderType=cv2.BORDER_CONSTANT)
    return np.minimum(soft, face_mask(size))


def paste_mask(
    size: int, matrix: np.ndarray | None = None, landmarks68: np.ndarray | None = None,
) -> np.ndarray:
    """The mask to paste a (size, size) crop with: face-shaped from the photo's (68, 2)
    landmarks and the (2, 3) photo -> crop matrix, or the square `face_mask(size)` without
    them (read-only in that case: it is shared)."""
    if landmarks68 is None or matrix is None:
        return face_mask(size)
    return face_shaped_mask(size, apply_affine(np.asarray(matrix, np.float64),
                                               np.asarray(landmarks68, np.float64)))
