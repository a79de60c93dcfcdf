"""Fine-detail energy ratio (metrics/detail.py) against SciPy and known cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from facemend.metrics.detail import fine_detail_energy, fine_detail_ratio


def test_energy_matches_scipy_gaussian_high_pass() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 56, 3)).astype(np.uint8)
    g = img.astype(np.float64).mean(axis=2)
    # cv2's sigma-1 kernel has 9 taps (truncate 4) and reflects without repeating the edge
    ref = np.mean((g - ndimage.gaussian_filter(g, 1.0, truncate=4.0, mode="mirror")) ** 2)
    assert fine_detail_energy(img) == pytest.approx(ref, rel=1e-6)


def test_known_cases() -> None:
    flat = np.full((16, 16, 3), 77, np.uint8)
    assert fine_detail_energy(flat) == pytest.approx(0.0, abs=1e-20)
    checker = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    checker = np.repeat(checker[..., None], 3, axis=2)
    # a +-127.5 checkerboard keeps (1 - H(pi, pi))^2 of its energy; cv2's 9-tap kernel at
    # sigma 1 has H(pi) = sum (-1)^k g_k, so the high-pass keeps (127.5 (1 - H^2))^2
    k = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    k /= k.sum()
    h = float(np.sum(k * (-1.0) ** np.arange(-4, 5)))
    assert fine_detail_energy(checker) == pytest.approx((127.5 * (1 - h * h)) ** 2, rel=2e-3)


def test_ratio_is_one_for_the_truth_and_low_for_a_blur() -> None:
    import cv2

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    blurred = cv2.GaussianBlur(truth, (0, 0), 2.0)
    r = fine_detail_ratio([truth, blurred], [truth, truth])
    assert r[0] == pytest.approx(1.0) and r[1] < 0.1
    assert fine_detail_ratio([truth], [np.zeros_like(truth)]) == [float("inf")]
