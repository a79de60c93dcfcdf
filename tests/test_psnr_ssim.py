"""PSNR / SSIM agree with scikit-image to 1e-4 on real face pairs (batched torch implementation)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from facemend.io import load_rgb
from facemend.metrics.psnr_ssim import psnr, ssim


@pytest.fixture(scope="module")
def pairs(face_files) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real faces paired with a blurred+noisy copy, a JPEG copy and another person's face."""
    files = face_files[:4]
    faces = [load_rgb(p) for p in files]
    rng = np.random.default_rng(0)
    out = []
    for i, y in enumerate(faces):
        blurred = cv2.GaussianBlur(y, (0, 0), 2.0).astype(np.float64)
        noisy = np.clip(blurred + rng.normal(0, 8, y.shape), 0, 255).round().astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", y, [cv2.IMWRITE_JPEG_QUALITY, 30])
        assert ok
        out += [(y, noisy), (y, cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)),
                (y, faces[(i + 1) % len(faces)])]
    return out


def _ref_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=255)


def test_psnr_matches_skimage(pairs):
    ours = psnr(np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs]))  # batched
    for (a, b), v in zip(pairs, ours.tolist(), strict=True):
        assert abs(v - peak_signal_noise_ratio(a, b, data_range=255)) < 1e-4


def test_ssim_matches_skimage(pairs):
    ours = ssim([a for a, _ in pairs], [b for _, b in pairs])  # batched
    for (a, b), v in zip(pairs, ours.tolist(), strict=True):
        assert abs(v - _ref_ssim(a, b)) < 1e-4


def test_identical_images(pairs):
    a = pairs[0][0]
    assert math.isinf(float(psnr(a, a)[0]))
    assert abs(float(ssim(a, a)[0]) - 1.0) < 1e-12


def test_non_square_and_small(pairs):
    a, b = pairs[0]
    a, b = a[10:60, 5:90], b[10:60, 5:90]  # (50, 85, 3)
    assert abs(float(ssim(a, b)[0]) - _ref_ssim(a, b)) < 1e-4
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[:8, :8], b[:8, :8])
