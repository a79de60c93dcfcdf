"""Fine detail: how much of the ground truth's finest-scale energy a restoration has.

PSNR and SSIM reward blur (the mean of the plausible faces is the best guess in L2); a face
restorer is also judged on whether its faces look as detailed as real ones. The measure (DESIGN
§3): the energy of the grey image minus its Gaussian blur (sigma 1 px at the test resolution),
as a fraction of the ground truth's. 1 = as detailed as the real face; a blurred output sits
near 0; noise or invented texture can take it above 1, so read it beside PSNR and identity.
"""

from __future__ import annotations

import numpy as np


def fine_detail_energy(img: np.ndarray, sigma: float = 1.0) -> float:
    """Mean square of the grey (H, W, 3) image minus its Gaussian blur (sigma px), 0-255 scale."""
    import cv2

    assert img.ndim == 3 and img.shape[2] == 3, img.shape
    g = np.asarray(img, np.float64).mean(axis=2)
    return float(np.mean((g - cv2.GaussianBlur(g, (0, 0), sigma)) ** 2))


def fine_detail_ratio(outputs: list[np.ndarray], targets: list[np.ndarray],
                      sigma: float = 1.0) -> list[float]:
    """Per image: fine-detail energy of the output over the ground truth's (inf for a flat GT)."""
    ratios = []
    for o, t in zip(outputs, targets, strict=True):
        e_t = fine_detail_energy(t, sigma)
        ratios.append(fine_detail_energy(o, sigma) / e_t if e_t > 0 else float("inf"))
    return ratios
