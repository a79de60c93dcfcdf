"""Eq. 13: the synthetic degradation x = JPEG_q(Downsample_r(y * k_sigma) + n_delta), SR inputs.

Eq. 13 follows GFPGAN's degradation pipeline (which the paper says it follows) and uses OpenCV
for every step, on (H, W, 3) uint8 RGB arrays:

1. blur: isotropic Gaussian kernel k_sigma, kernel side 41 at 512 px, reflect-101 border
   (`cv2.sepFilter2D`, float32);
2. downsample by r: `cv2.resize(..., INTER_LINEAR)` to round(side / r) (the blur already band-limits
   the image, as in GFPGAN, so no extra anti-aliasing);
3. noise: per-channel ("colour") Gaussian noise of std delta on the 0-255 scale, then clip + round;
4. JPEG at quality q with `cv2.imencode`, 4:2:0 chroma subsampling stated explicitly (OpenCV's and
   libjpeg's default, as in most web JPEGs and in GFPGAN); the array is converted to BGR first so
   that the JPEG colour transform sees the right channels;
5. resize back to the input size with `cv2.resize(..., INTER_LINEAR)` (bilinear).

Ranges are the paper's (sigma in [0.2, 10], r in [1, 8], delta in [0, 15], q in [60, 100]) and are
defined at 512 px. At another side H, sigma and the kernel size are multiplied by H / 512 so
that an H-pixel face sees the same degradation as its 512-pixel version; r is a ratio and stays as
is, but is clamped so that the downsampled side is >= `DegradationConfig.min_side`.
`DegradationParams.sigma` is recorded in the 512-px convention (comparable across resolutions);
`degrade_with` rescales it.

SR inputs (DESIGN §2) use Pillow's bicubic resize, which is anti-aliased on downsampling (close to
MATLAB's `imresize`, the SR benchmarks' convention): y -> H / factor -> H.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from PIL import Image

from facemend.config import DegradationConfig

REFERENCE_SIDE = 512  # eq. 13 ranges are defined at this side


@dataclass(frozen=True)
class DegradationParams:
    """One draw of eq. 13's parameters (sigma in 512-px pixels, r, delta on 0-255, JPEG q)."""

    sigma: float  # Gaussian blur std at 512 px; applied as sigma * H / 512
    scale: float  # downsampling factor r (after clamping to keep the side >= min_side)
    noise: float  # Gaussian noise std delta, 0-255 scale
    jpeg: int  # JPEG quality q

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict (for CSV/JSON)."""
        return asdict(self)


def max_scale(side: int, cfg: DegradationConfig = DegradationConfig()) -> float:
    """Largest r at this side that keeps the downsampled side >= cfg.min_side."""
    return max(1.0, side / cfg.min_side)


def sample_params(
    rng: np.random.Generator, cfg: DegradationConfig = DegradationConfig(), side: int = 512
) -> DegradationParams:
    """Eq. 13: draw sigma, r, delta ~ uniform, integer q ~ U{q_lo..q_hi}; r clamped for `side`."""
    sigma = float(rng.uniform(*cfg.sigma))
    scale = float(rng.uniform(*cfg.scale))
    noise = float(rng.uniform(*cfg.noise))
    jpeg = int(rng.integers(cfg.jpeg[0], cfg.jpeg[1] + 1))
    return DegradationParams(sigma, min(scale, max_scale(side, cfg)), noise, jpeg)


def gaussian_kernel1d(sigma: float, size: int) -> np.ndarray:
    """Normalised 1-D Gaussian of odd length `size` (float32); the 2-D kernel is k k^T."""
    assert size % 2 == 1 and size >= 1, size
    x = np.arange(size, dtype=np.float64) - size // 2
    k = np.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return (k / k.sum()).astype(np.float32)


def scaled_kernel_size(side: int, cfg: DegradationConfig = DegradationConfig()) -> int:
    """Blur kernel side at `side` px: cfg.kernel_size * side / 512, rounded to an odd int >= 3."""
    k = int(round(cfg.kernel_size * side / REFERENCE_SIDE))
    k = max(3, k)
    return k if k % 2 == 1 else k + 1


def blur(img: np.ndarray, sigma_px: float, ksize: int) -> np.ndarray:
    """Eq. 13 y * k_sigma: separable Gaussian blur, float32 out, reflect-101 border."""
    k = gaussian_kernel1d(sigma_px, ksize)
    return cv2.sepFilter2D(
        img.astype(np.float32), -1, k, k, borderType=cv2.BORDER_REFLECT_101
    )  # (H, W, 3)


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """Eq. 13 JPEG_q: encode/decode (H, W, 3) uint8 RGB with OpenCV, 4:2:0 chroma subsampling."""
    params = [
        int(cv2.IMWRITE_JPEG_QUALITY), int(quality),
        int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR), int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420),
    ]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
    assert ok, "cv2.imencode failed"
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def degrade_with(
    img: np.ndarray,
    params: DegradationParams,
    rng: np.random.Generator,
    cfg: DegradationConfig = DegradationConfig(),
) -> np.ndarray:
    """Eq. 13 with fixed parameters (noise n_delta drawn from `rng`); (H, W, 3) uint8 in and out."""
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, (img.shape, img.dtype)
    h, w = img.shape[:2]
    side = min(h, w)
    factor = side / REFERENCE_SIDE
    x = blur(img, params.sigma * factor, scaled_kernel_size(side, cfg))  # (H, W, 3) float32
    r = min(params.scale, max_scale(side, cfg))
    small = (max(1, int(round(w / r))), max(1, int(round(h / r))))  # cv2 order: (width, height)
    if small != (w, h):
        x = cv2.resize(x, small, interpolation=cv2.INTER_LINEAR)  # (h/r, w/r, 3)
    if params.noise > 0:
        x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(params.noise)
    x8 = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    x8 = jpeg_compress(x8, params.jpeg)
    if small != (w, h):
        x8 = cv2.resize(x8, (w, h), interpolation=cv2.INTER_LINEAR)  # (H, W, 3)
    return x8


def degrade(
    img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig = DegradationConfig()
) -> tuple[np.ndarray, DegradationParams]:
    """Eq. 13: sample parameters from `rng` and degrade (H, W, 3) uint8; returns (x, params)."""
    params = sample_params(rng, cfg, side=min(img.shape[:2]))
    return degrade_with(img, params, rng, cfg), params


def sr_downsample(img: np.ndarray, factor: int) -> np.ndarray:
    """SR input at low resolution: Pillow bicubic (anti-aliased) to (H // factor, W // factor)."""
    assert factor >= 1, factor
    h, w = img.shape[:2]
    size = (max(1, w // factor), max(1, h // factor))
    return np.array(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))


def sr_input(img: np.ndarray, factor: int) -> np.ndarray:
    """SR input at full size (DESIGN §2): Pillow bicubic down by `factor`, then bicubic up to H."""
    h, w = img.shape[:2]
    small = sr_downsample(img, factor)
    return np.array(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
