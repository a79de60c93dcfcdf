"""Detail-preserving restoration (inference/detail.py): the input's detail above the model's band
survives, a sharp face is not changed by a model's error, a degraded one takes the model's
change, and coring removes noise but keeps edges."""

from __future__ import annotations

import numpy as np
import pytest

from facemend.inference.detail import core, model_trust, resize, transfer_detail

S, H = 256, 64


def natural_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Zero-mean texture with a 1/f amplitude spectrum (as natural images): as sharp at every
    scale, so that its top octave stays strong against the next after any downscale."""
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    spectrum = rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))
    field = np.real(np.fft.ifft2(spectrum / np.maximum(f, 1.0 / size)))
    return (field / field.std()).astype(np.float32)


def textured_face(seed: int = 0, size: int = S) -> np.ndarray:
    """A synthetic 'face': smooth shading, a few edges, 1/f texture and fine stripes above H's
    band, drawn the same at any `size` (the texture is made at S and resized)."""
    rng = np.random.default_rng(seed)
    texture = resize(natural_texture(rng, S)[..., None], size)[..., 0] * 10.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = 110 + 60 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.45) ** 2) / 0.08)
    base += 40 * ((xx - 0.3) ** 2 + (yy - 0.4) ** 2 < 0.004)  # an 'eye'
    base += 40 * ((xx - 0.7) ** 2 + (yy - 0.4) ** 2 < 0.004)
    fine = 12 * np.sin(2 * np.pi * xx * size / 3.1) * (yy > 0.6)  # stripes at 1/3.1 cycles/px
    noise = rng.normal(0, 1.0, (size, size))
    base = base + texture
    img = np.stack([base + fine + noise, 0.9 * base + fine, 0.8 * base + fine], axis=2)
    return np.clip(img, 0, 255).astype(np.float32)


def band_energy(img: np.ndarray, size: int, rows: slice = slice(None)) -> float:
    """Energy of what a model at `size` cannot see (img minus its round trip through size),
    over `rows` of the image."""
    high = img - resize(resize(img, size), img.shape[0])
    return float(np.mean(high[rows] ** 2))


def test_detail_above_the_model_band_survives_what_replacing_loses() -> None:
    x_S = textured_face()
    x_H = resize(x_S, H)
    y_H = np.clip(x_H + np.random.default_rng(1).normal(0, 3, x_H.shape), 0, 255)  # a change
    out, t = transfer_detail(x_S, x_H, y_H, trust=1.0)
    replaced = resize(y_H, S)  # the old rule
    stripes = slice(int(0.62 * S), S)  # rows with strong, real detail above H's band
    e_in = band_energy(x_S, H, stripes)
    assert e_in > 20  # the test image does hold detail above H
    assert band_energy(out, H, stripes) > 0.25 * e_in  # kept, if cored, at full trust
    assert band_energy(replaced, H, stripes) < 0.05 * e_in  # the plain rule drops it
    kept, _ = transfer_detail(x_S, x_H, y_H)  # the trust measured: a sharp input, left as is
    assert np.abs(kept - x_S).max() < 0.51
    # and the model's own change is in the output, in its band
    delta = resize(out, H) - x_H
    assert np.corrcoef(delta.ravel(), (y_H - x_H).ravel())[0, 1] > 0.9


def test_a_sharp_face_is_left_as_it_came_and_a_blurred_one_takes_the_change() -> None:
    import cv2

    rng = np.random.default_rng(2)
    sharp = textured_face(3, H)
    harm = rng.normal(0, 3, sharp.shape).astype(np.float32)  # a model's error on a clean face
    assert model_trust(sharp, sharp + harm) == 0.0
    out, t = transfer_detail(textured_face(3), resize(textured_face(3), H),
                             resize(textured_face(3), H) + harm)
    assert t == 0.0 and np.allclose(out, textured_face(3), atol=0.51)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    sharpened = sharp  # a model that restores the blur
    assert model_trust(blurred, sharpened) == 1.0


def test_noise_the_model_removes_counts_as_damage() -> None:
    rng = np.random.default_rng(4)
    clean = textured_face(5, H)
    noisy = clean + rng.normal(0, 12, clean.shape).astype(np.float32)
    assert model_trust(noisy, clean) > 0.5  # looks sharp (noise), but the change is large
    assert model_trust(clean, clean + 0.5) == 0.0


def test_core_keeps_edges_and_removes_flat_noise() -> None:
    rng = np.random.default_rng(6)
    band = rng.normal(0, 2.0, (128, 128, 3)).astype(np.float32)
    band[:, 60:68] += 40.0 * np.sign(np.sin(np.arange(8)))[None, :, None]  # strong detail
    cored = core(band, 1.0)
    flat = (slice(0, 128), slice(0, 40))
    assert np.mean(cored[flat] ** 2) < 0.5 * np.mean(band[flat] ** 2)
    edge = (slice(0, 128), slice(60, 68))
    assert np.mean(cored[edge] ** 2) > 0.9 * np.mean(band[edge] ** 2)
    assert np.array_equal(core(band, 0.0), band)


@pytest.mark.parametrize("size", [H, 48])
def test_faces_at_or_below_the_model_size_get_the_rule_at_model_size(size: int) -> None:
    x_H = textured_face(7, H)
    y_H = x_H + 10.0
    out, _ = transfer_detail(textured_face(7, size), x_H, y_H, trust=0.5)
    assert out.shape == (H, H, 3)
    assert np.allclose(out, np.clip(x_H + 5.0, 0, 255), atol=1e-4)
