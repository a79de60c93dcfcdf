"""PSNR and SSIM on 8-bit RGB images, batched in torch (the paper's Table 1 fidelity columns).

Convention (stated once, used everywhere): images are uint8 RGB, compared on the full frame (no
border crop, no Y channel), data range 255. SSIM uses an 11-tap Gaussian window (sigma 1.5,
truncated at 3.5 sigma), population (not sample) covariances, K1 = 0.01, K2 = 0.03, is computed per
channel over the 'valid' region (the window fully inside the image) and averaged over channels.
This equals scikit-image's ``structural_similarity(channel_axis=2, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255)`` and ``peak_signal_noise_ratio``.
Filtering runs in float32 on centred data, the rest in float64: agreement ~1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

DATA_RANGE = 255.0


def as_batch(imgs: np.ndarray | torch.Tensor | list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3), (B, H, W, 3) or a list of (H, W, 3) -> float64 (B, 3, H, W) in [0, 255]."""
    if isinstance(imgs, list):
        imgs = np.stack(imgs)
    t = imgs if isinstance(imgs, torch.Tensor) else torch.from_numpy(np.array(imgs))  # a copy
    if t.ndim == 3:
        t = t.unsqueeze(0)
    assert t.ndim == 4 and t.shape[-1] == 3, f"expected (B, H, W, 3) RGB, got {tuple(t.shape)}"
    return t.permute(0, 3, 1, 2).to(torch.float64)  # (B, 3, H, W)


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, 10 log10(255^2 / MSE) over all pixels and channels; inf if equal."""
    x, y = as_batch(a), as_batch(b)  # (B, 3, H, W)
    assert x.shape == y.shape, (x.shape, y.shape)
    mse = (x - y).pow(2).flatten(1).mean(1)  # (B,)
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)  # mse == 0 -> inf


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    """Normalised 1-D Gaussian taps as scipy.ndimage builds them (radius round(truncate*sigma))."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()  # (2r+1,)


def _filter(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of every channel of (N, C, H, W)."""
    c, k = x.shape[1], w.numel()
    w = w.to(x.dtype)
    x = F.conv2d(x, w.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)  # (N, C, H-k+1, W)
    return F.conv2d(x, w.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)  # (N, C, H', W')


def ssim(
    a: np.ndarray | torch.Tensor,
    b: np.ndarray | torch.Tensor,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004) with a Gaussian window, averaged over RGB channels."""
    x, y = as_batch(a), as_batch(b)  # (B, 3, H, W)
    assert x.shape == y.shape, (x.shape, y.shape)
    w = gaussian_window(sigma)
    if min(x.shape[-2:]) < w.numel():
        raise ValueError(f"SSIM needs images of at least {w.numel()}x{w.numel()} pixels")
    c1, c2 = (k1 * DATA_RANGE) ** 2, (k2 * DATA_RANGE) ** 2
    # Moments in float32 on data centred at 127.5 (bounds the cancellation in E[x^2] - E[x]^2
    # to ~1e-3 against C2 = 58.5), the SSIM formula in float64: agrees with float64 to ~1e-6.
    xc, yc = (x - 127.5).float(), (y - 127.5).float()
    stacked = torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], dim=1)  # (B, 15, H, W)
    mx, my, mxx, myy, mxy = _filter(stacked, w).double().split(3, dim=1)  # each (B, 3, H', W')
    vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    mx, my = mx + 127.5, my + 127.5
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)  # (B,) mean over pixels, then channels


def mean_psnr(values: torch.Tensor | list[float]) -> float:
    """Mean of per-image PSNRs (the BFR literature's convention); inf if any pair is identical."""
    v = [float(x) for x in values]
    return math.inf if any(math.isinf(x) for x in v) else float(np.mean(v))
