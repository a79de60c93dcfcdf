"""Paste-back: identity round trip, feathered mask without hard edges, colour matching."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facemend.inference.align import affine_scale, align_face
from facemend.inference.detect import detect_faces
from facemend.inference.paste import (
    colour_stats,
    face_mask,
    match_colour,
    output_matrix,
    paste_face,
    upscale_image,
)
from facemend.inference.restore import restore_photo
from facemend.io import load_rgb

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "photos"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.fixture(scope="module")
def kit() -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The two-face example photo, its 512 crops and photo -> crop matrices."""
    img = load_rgb(EXAMPLES / "kit_with_rose.jpg")
    aligned = [align_face(img, f.landmarks5, 512) for f in detect_faces(img)]
    assert len(aligned) == 2
    return img, [c for c, _ in aligned], [m for _, m in aligned]


@pytest.mark.parametrize("detail", [True, False])
def test_identity_paste_leaves_photo_unchanged(kit, detail: bool) -> None:
    img, crops, mats = kit
    out = restore_photo(img, lambda x: x, 512, detail=detail).images[0]
    assert out.shape == img.shape and out.dtype == np.uint8
    assert psnr(out, img) > 35.0
    for f in detect_faces(img):  # inside each face box too
        x0, y0, x1, y1 = (int(v) for v in f.box)
        assert psnr(out[y0:y1, x0:x1], img[y0:y1, x0:x1]) > 35.0
    changed = np.any(out != img, axis=-1)
    if detail:  # only the restoration's change is pasted, and it changed nothing
        assert not changed.any()
        return
    ys, xs = np.nonzero(changed)
    # nothing outside the faces' regions changes
    assert changed.mean() < 0.25 and xs.min() > 20 and ys.max() < 0.7 * img.shape[0]


def test_pasting_a_change_adds_it_under_the_mask(kit) -> None:
    img, crops, mats = kit
    canvas = img.astype(np.float32)
    m_out = output_matrix(mats[0], img.shape, img.shape)
    source = crops[0].astype(np.float32)
    face = np.clip(source + 20.0, 0, 255)  # a change of +20 wherever the crop is below 235
    mask = face_mask(512)
    box = paste_face(canvas, face, m_out, mask, source=source)
    x0, y0, x1, y1 = box
    added = canvas - img.astype(np.float32)
    outside = np.ones(img.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(added[outside] == 0)
    centre = np.rint(np.linalg.solve(m_out[:, :2], np.array([256, 256]) - m_out[:, 2]))
    cx, cy = int(centre[0]), int(centre[1])
    # where the mask is 1 and the photo is not near white, exactly the change is added
    patch = added[cy - 5 : cy + 5, cx - 5 : cx + 5]
    bright = img[cy - 5 : cy + 5, cx - 5 : cx + 5] > 230
    assert np.allclose(patch[~bright], 20.0, atol=0.5)
    # a mask given at a quarter of the face's size pastes alike (it is smooth)
    again = img.astype(np.float32)
    small = cv2.resize(mask, (128, 128), interpolation=cv2.INTER_AREA)
    paste_face(again, face, m_out, small, source=source)
    assert np.abs(again - canvas).max() < 1.0


def test_identity_paste_at_upscale_2_matches_upscaled_background(kit) -> None:
    img, crops, mats = kit
    out = restore_photo(img, lambda x: x, 512, upscale=2).images[0]
    assert out.shape == (2 * img.shape[0], 2 * img.shape[1], 3)
    ref = np.clip(np.rint(upscale_image(img, 2)), 0, 255).astype(np.uint8)
    assert psnr(out, ref) > 35.0


def test_mask_has_no_hard_edge() -> None:
    for size in (128, 512):
        m = face_mask(size)
        sigma = size / 48
        assert m.shape == (size, size) and m.dtype == np.float32
        assert m[size // 2, size // 2] == pytest.approx(1.0, abs=1e-4)
        border = np.concatenate([m[0], m[-1], m[:, 0], m[:, -1]])
        assert border.max() < 0.005  # the crop's box is invisible
        gy, gx = np.gradient(m)
        assert np.hypot(gx, gy).max() <= 1.05 / (sigma * np.sqrt(2 * np.pi))


def test_pasted_mask_slope_bounded_in_photo(kit) -> None:
    img, crops, mats = kit
    canvas = np.zeros(img.shape, np.float32)
    white = np.full((512, 512, 3), 255, np.uint8)
    for m in mats:
        m_out = output_matrix(m, img.shape, canvas.shape)
        x0, y0, x1, y1 = paste_face(canvas, white, m_out)
        assert canvas[:y0].max() == 0 and canvas[y1:].max() == 0  # writes only its box
        assert canvas[:, :x0].max() == 0 and canvas[:, x1:].max() == 0
        canvas[:] = 0  # one face at a time
        paste_face(canvas, white, m_out)
        alpha = canvas[..., 0] / 255.0
        sigma_photo = (512 / 48) / affine_scale(m)
        gy, gx = np.gradient(alpha)
        assert alpha.max() > 0.999
        assert np.hypot(gx, gy).max() <= 1.3 / (sigma_photo * np.sqrt(2 * np.pi))
        canvas[:] = 0


def test_colour_match_identity_and_shift(kit) -> None:
    _, crops, _ = kit
    ref = crops[0]
    same = match_colour(ref, ref)
    assert np.abs(same - ref.astype(np.float32)).max() <= 1.0
    # a colour-cast, darker "restoration" with the same detail
    cast = np.clip(ref.astype(np.float32) * [0.8, 0.9, 1.1] + [0, -10, 20], 0, 255)
    fixed = match_colour(cast, ref)
    w = face_mask(512)[..., None]
    mean_err = lambda x: np.abs(((x - ref) * w).sum((0, 1)) / w.sum()).max()  # noqa: E731
    assert mean_err(fixed) < 0.25 * mean_err(cast)
    # detail (high-pass) of the restored face is kept
    import cv2

    hp = lambda x: x - cv2.GaussianBlur(x.astype(np.float32), (0, 0), 8)  # noqa: E731
    corr = np.corrcoef(hp(fixed)[..., 1].ravel(), hp(cast)[..., 1].ravel())[0, 1]
    assert corr > 0.95


def test_colour_match_to_given_statistics(kit) -> None:
    _, crops, _ = kit
    ref = crops[0].astype(np.float32)
    cast = np.clip(ref * [0.8, 0.9, 1.1] + [0, -10, 20], 0, 255)
    stats = colour_stats(ref)
    assert np.array_equal(match_colour(cast, ref, target=stats), match_colour(cast, ref))
    # other statistics win over the reference's: the face takes the brighter face's colour
    bright = np.clip(ref + 25.0, 0, 255)
    to_bright = match_colour(cast, ref, target=colour_stats(bright))
    mu, sd = colour_stats(to_bright)
    mu_b, sd_b = colour_stats(bright)
    assert np.abs(mu - mu_b).max() < 0.5 and np.abs(mu - stats[0])[0] > 5
    assert np.allclose(sd, sd_b, rtol=0.05, atol=0.2)

