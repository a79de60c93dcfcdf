"""Detail-preserving restoration at any face size: the model's change, not its image, is kept.

A model of resolution H sees a face of output size S through a copy resized to H. Replacing the
face by the model's output resized back to S throws away everything finer than H/2 cycles per
face that the input had (a sharp 512 px face loses 7-8 dB through a 128 px model). Instead:

    y_S = x_S + t * up_S(y_H - x_H) + (core(h_S) - h_S),    h_S = x_S - up_S(down_H(x_S))

- The model's change y_H - x_H is added to the input at S, so its band above H/2 (detail the
  model cannot see) passes through; the face at S keeps the input's detail.
- `t`, the trust in the model's change (`model_trust`), is how degraded the input looks *within
  the model's band*, so a face that is already sharp at H is not made worse by a model's error:
  a model's change to a clean face can only be error. It is the larger of two measured signs:
  (a) the input's top octave at H is weak against the octave below it (blur, downsampling), and
  (b) the model's change is large against the input's top octave (noise, JPEG blocks it
  removes). Measured with the 128 px reconstruction model on 30 hq512 faces
  (`benchmarks/detail_preservation.py`): octave ratio s (median, 10-90 %) 1.26 (1.03-1.44)
  for clean and JPEG q 70 faces, 0.57 (0.28-0.82) for eq. 13 degradations; change ratio q 0.16
  (0.06-0.31) for clean faces, 1.14 (0.32-7.3) for eq. 13. The per-face trust that minimises
  the error was 0-0.05 for clean / JPEG / 1 px blur at 512 px and a median of 0.85 for eq. 13.
- `core` suppresses what in the band above H looks like damage rather than detail: a Wiener
  shrink of that band, per pixel, against the noise level of the band (median absolute value),
  in proportion to sign (b) only (a clean or merely blurred face keeps that band as it came:
  blurred detail is still detail). Real detail (edges, eyelashes, hair) has local energy well
  above the noise floor and is kept.
  Chosen on 24 hq512 faces, PSNR change against the input: 1 px blur at 256 px -0.43 dB with
  the octave ratio mapped from [0.55, 1.0] and coring by the trust, -0.19 dB with [0.35, 0.85]
  and coring by sign (b); eq. 13 at 512 px +0.47 dB (the plain rule +0.27, no coring +0.40).
Faces at S <= H take the same rule at H (the model's change scaled by the trust) and are then
resized to S by the caller. Arrays are float32 (S, S, 3) in [0, 255].
"""

from __future__ import annotations

import numpy as np

# (a): octave ratio at or above SHARP -> no trust from it; at or below BLURRED -> full trust.
OCTAVE_RATIO_SHARP = 0.85
OCTAVE_RATIO_BLURRED = 0.35
# (b): change ratio at or below LOW -> no trust from it; at or above HIGH -> full trust.
CHANGE_RATIO_LOW = 0.3
CHANGE_RATIO_HIGH = 0.8
MAD_TO_SIGMA = 1.4826  # sigma of a Gaussian from its median absolute deviation


def resize(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(h, w, C) float32 -> (size, size, C), or (h', w', C) for size = (w', h'): area average
    when the image shrinks, Lanczos when it grows (both anti-aliased)."""
    import cv2

    w, h = (size, size) if isinstance(size, int) else size
    if img.shape[0] == h and img.shape[1] == w:
        return img.astype(np.float32, copy=False)
    interp = cv2.INTER_AREA if w * h < img.shape[0] * img.shape[1] else cv2.INTER_LANCZOS4
    out = cv2.resize(np.asarray(img, np.float32), (w, h), interpolation=interp)
    return out.reshape(h, w, *img.shape[2:])


def resize_uint8(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """`resize`, rounded and clipped to a uint8 image."""
    return np.rint(resize(img, size)).clip(0, 255).astype(np.uint8)


def grey(img: np.ndarray) -> np.ndarray:
    """(S, S, 3) -> (S, S) float32 channel mean."""
    return np.asarray(img, np.float32).mean(axis=2)


def octave_energies(g: np.ndarray) -> tuple[float, float]:
    """Mean-square energy of the top octave (g - blur_1) and the next (blur_1 - blur_2)."""
    import cv2

    b1 = cv2.GaussianBlur(g, (0, 0), 1.0)
    b2 = cv2.GaussianBlur(g, (0, 0), 2.0)
    return float(np.mean((g - b1) ** 2)), float(np.mean((b1 - b2) ** 2))


def degradation_signs(x_H: np.ndarray, y_H: np.ndarray) -> tuple[float, float]:
    """(blur, damage), each in [0, 1]: signs (a) and (b) of the module doc."""
    g = grey(x_H)
    e0, e1 = octave_energies(g)
    s = e0 / max(e1, 1e-6)  # ~1.3 for a sharp face, lower the more it is blurred
    blurred = (OCTAVE_RATIO_SHARP - s) / (OCTAVE_RATIO_SHARP - OCTAVE_RATIO_BLURRED)
    q = float(np.mean((grey(y_H) - g) ** 2)) / max(e0, 1e-6)
    damaged = (q - CHANGE_RATIO_LOW) / (CHANGE_RATIO_HIGH - CHANGE_RATIO_LOW)
    return float(np.clip(blurred, 0.0, 1.0)), float(np.clip(damaged, 0.0, 1.0))


def model_trust(x_H: np.ndarray, y_H: np.ndarray) -> float:
    """How much of the model's change (y_H - x_H) to keep, in [0, 1] (see the module doc)."""
    return max(degradation_signs(x_H, y_H))


def core(high: np.ndarray, strength: float, window: float = 1.5) -> np.ndarray:
    """Wiener-shrink an (S, S, 3) zero-mean band against its own noise floor, by `strength`.

    The noise floor sigma^2 comes from the band's median absolute value (most of a face is
    smooth skin, where the band holds only noise and compression error); each pixel keeps the
    fraction max(0, 1 - sigma^2 / E) of itself, E its local energy (Gaussian window), and the
    result is mixed with the band by `strength` in [0, 1].
    """
    import cv2

    if strength <= 0:
        return high
    sigma2 = (MAD_TO_SIGMA * float(np.median(np.abs(high)))) ** 2
    energy = cv2.GaussianBlur(np.mean(high**2, axis=2), (0, 0), window)  # (S, S)
    gain = np.clip(1.0 - sigma2 / np.maximum(energy, 1e-6), 0.0, 1.0)[..., None]
    return high * (1.0 - strength * (1.0 - gain))


def transfer_detail(
    x_S: np.ndarray, x_H: np.ndarray, y_H: np.ndarray, trust: float | None = None
) -> tuple[np.ndarray, float]:
    """The restored face at the input's size S, and the trust used (see the module doc).

    x_S: (S, S, 3) input face at its own size; x_H, y_H: (H, H, 3) the model's input and
    output. For S <= H the result is at H (x_H + t (y_H - x_H)); the caller resizes it.
    """
    S, H = x_S.shape[0], x_H.shape[0]
    assert x_S.shape == (S, S, 3) and x_H.shape == y_H.shape == (H, H, 3), (x_S.shape, x_H.shape)
    x_H, y_H = np.asarray(x_H, np.float32), np.asarray(y_H, np.float32)
    blurred, damaged = degradation_signs(x_H, y_H)
    t = max(blurred, damaged) if trust is None else float(trust)
    if S <= H:
        return np.clip(x_H + t * (y_H - x_H), 0.0, 255.0), t
    x_S = np.asarray(x_S, np.float32)
    high = x_S - resize(resize(x_S, H), S)  # (S, S, 3): what the model cannot see
    # the band above H is cored for damage (noise, blocks), not for blur: blurred detail is
    # still detail
    strength = damaged if trust is None else t
    out = x_S + t * resize(y_H - x_H, S) + (core(high, strength) - high)
    return np.clip(out, 0.0, 255.0), t
