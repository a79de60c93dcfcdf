"""The Python API: `facemend.FaceRestorer(...).enhance(img)` and `restore_file`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import facemend
from conftest import tiny_generator
from facemend.io import load_rgb

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "photos" / "john2.jpg"  # one face of ~283 px


@pytest.fixture(scope="module")
def restorer(weights: Path) -> facemend.FaceRestorer:
    return facemend.FaceRestorer(weights, identity=False, noise_scale=0.0)


def test_import_is_light_and_the_class_is_at_the_top_level() -> None:
    code = "import sys, facemend; assert 'torch' not in sys.modules; print(facemend.__version__)"
    assert subprocess.run([sys.executable, "-c", code], check=True).returncode == 0
    from facemend.inference.api import FaceRestorer

    assert facemend.FaceRestorer is FaceRestorer


def test_enhance_a_photo_returns_the_photo_and_faces_at_their_own_size(restorer) -> None:
    img = load_rgb(PHOTO)
    res = restorer.enhance(img, upscale=2)
    assert res.image.shape == (2 * img.shape[0], 2 * img.shape[1], 3)
    assert len(res.faces) == 1 and res.images[0] is res.image
    face = res.faces[0]
    side = face.cropped.shape[0]
    assert side == round(face.source_size * 2) > 32  # its size in the output, not the model's
    assert res.restored_faces[0].shape == (side, side, 3)
    fixed = restorer.enhance(img, face_size=512)
    assert fixed.restored_faces[0].shape == fixed.cropped_faces[0].shape == (512, 512, 3)


def test_restore_file_equals_enhance_on_the_decoded_image(restorer, weights) -> None:
    again = facemend.FaceRestorer(weights, identity=False, noise_scale=0.0)
    a = again.restore_file(PHOTO).image
    b = restorer.enhance(load_rgb(PHOTO)).image
    np.testing.assert_array_equal(a, b)


def test_aligned_face_comes_back_at_its_own_size(restorer) -> None:
    face = np.asarray(load_rgb(REPO / "tests" / "fixtures" / "faces" / "john2_00.png"))
    res = restorer.enhance(face, aligned=True)
    assert res.image.shape == face.shape and len(res.faces) == 1


def test_per_image_noise_and_seed(weights: Path) -> None:
    r = facemend.FaceRestorer(model=tiny_generator(0.5), identity=False, detail=False)
    assert r.info["weights"] == "<in memory>"
    img = load_rgb(PHOTO)
    a = r.enhance(img, noise_scale=1.0, seed=1).faces[0].restored[0]
    b = r.enhance(img, noise_scale=1.0, seed=1).faces[0].restored[0]
    c = r.enhance(img, noise_scale=1.0, seed=2).faces[0].restored[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((8, 8, 3), np.float32)])
def test_bad_arrays_and_options_are_one_line_errors(restorer, weights, bad) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        restorer.enhance(bad)
    with pytest.raises(ValueError, match="identity"):
        facemend.FaceRestorer(weights, identity=False, identity_guard=0.5)
    with pytest.raises(ValueError, match="finite"):
        facemend.FaceRestorer(weights, identity=False, noise_scale=float("nan"))


def test_smallest_face_trades_small_faces_for_speed(weights: Path) -> None:
    import cv2

    photo = load_rgb(PHOTO)  # its face is ~283 px across
    small = cv2.resize(photo, (photo.shape[1] * 2 // 5, photo.shape[0] * 2 // 5),
                       interpolation=cv2.INTER_AREA)  # the face ~113 px
    canvas = np.full((2000, 3000, 3), 235, np.uint8)  # 113 / 3000 < 1/20 of the longer side
    canvas[900:900 + small.shape[0], 1400:1400 + small.shape[1]] = small
    default = facemend.FaceRestorer(weights, identity=False)
    every = facemend.FaceRestorer(weights, identity=False, smallest_face=0)
    assert default.enhance(canvas, upsample=0).faces == []
    assert len(every.enhance(canvas, upsample=0).faces) == 1
    with pytest.raises(ValueError, match="smallest_face"):
        facemend.FaceRestorer(weights, identity=False, smallest_face=1.5)
