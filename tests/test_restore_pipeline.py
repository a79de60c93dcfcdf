"""The whole-photo pipeline with stand-in restorers (identity, negation, noise) and identity fns."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from facemend.inference.align import template
from facemend.inference.detect import DetectOptions, detect_faces
from facemend.inference.restore import model_restorer, restore_photo
from facemend.io import load_rgb, to_tensor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "photos"
SIZE = 256  # the pipeline is resolution-agnostic; 256 keeps the tests quick


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


class CountingIdentity:
    """Identity restorer that records the batch sizes it saw."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1:] == (3, SIZE, SIZE) and x.min() >= -1 and x.max() <= 1
        self.batches.append(x.shape[0])
        return x.clone()


def pooled_identity(x: torch.Tensor) -> torch.Tensor:
    """Cheap stand-in embedding: centred 8x8 average-pooled pixels, (B, 192)."""
    e = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)
    return e - e.mean(dim=1, keepdim=True)


@functools.cache
def _dlib_face_net() -> Any:
    import dlib

    from facemend.inference.detect import _model_file

    return dlib.face_recognition_model_v1(_model_file("dlib_face_recognition_resnet_model_v1.dat"))


def dlib_identity(x: torch.Tensor) -> torch.Tensor:
    """dlib's 128-D face ResNet on aligned crops, landmarks = the alignment template."""
    import dlib

    size = x.shape[-1]
    pts = dlib.points([dlib.point(int(round(px)), int(round(py))) for px, py in template(size)])
    shape = dlib.full_object_detection(dlib.rectangle(0, 0, size - 1, size - 1), pts)
    imgs = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    net = _dlib_face_net()
    emb = [np.array(net.compute_face_descriptor(np.ascontiguousarray(im), shape)) for im in imgs]
    return torch.tensor(np.stack(emb))  # (B, 128)


@pytest.fixture(scope="module")
def kit() -> np.ndarray:
    return load_rgb(EXAMPLES / "kit_with_rose.jpg")


def test_identity_restorer_reproduces_photo(kit) -> None:
    restorer = CountingIdentity()
    res = restore_photo(kit, restorer, SIZE, batch_size=1)
    assert restorer.batches == [1, 1]
    assert len(res.images) == 1 and res.images[0].shape == kit.shape
    assert psnr(res.images[0], kit) > 35.0
    assert [f.index for f in res.faces] == [0, 1]
    for f in res.faces:
        assert f.cropped.shape == (SIZE, SIZE, 3) and f.cropped.dtype == np.uint8
        assert len(f.restored) == 1 and f.restored[0].shape == (SIZE, SIZE, 3)
        assert f.matrix.shape == (2, 3) and f.landmarks5.shape == (5, 2)
        assert f.identity == [None] and f.guard == ["none"]
        assert 100 < f.source_size < 400
    assert set(res.timings) == {"detect", "align", "restore", "paste"}


def test_upscale_and_samples(kit) -> None:
    gen = torch.Generator().manual_seed(0)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return (x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)

    res = restore_photo(kit, noisy, SIZE, upscale=2, samples=2, batch_size=4, colour_match=False)
    assert len(res.images) == 2
    assert res.images[0].shape == (2 * kit.shape[0], 2 * kit.shape[1], 3)
    assert not np.array_equal(res.images[0], res.images[1])  # samples differ
    assert all(len(f.restored) == 2 for f in res.faces)


def test_face_index_and_center_face() -> None:
    img = load_rgb(EXAMPLES / "obama_and_biden.jpg")
    faces = detect_faces(img)
    assert len(faces) == 3
    res = restore_photo(img, lambda x: x, SIZE, face_index=2)
    assert [f.index for f in res.faces] == [2]
    assert res.faces[0].box == faces[2].box
    cy, cx = img.shape[0] / 2, img.shape[1] / 2
    dist = [(f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2 for f in faces]
    res = restore_photo(img, lambda x: -x, SIZE, only_center_face=True)
    assert [f.index for f in res.faces] == [int(np.argmin(dist))]
    # only that face's region changed
    x0, y0, x1, y1 = (int(v) for v in faces[int(np.argmax(dist))].box)
    np.testing.assert_array_equal(res.images[0][y0:y1, x0:x1], img[y0:y1, x0:x1])
    assert restore_photo(img, lambda x: x, SIZE, face_index=7).faces == []


def test_no_face_returns_upscaled_background() -> None:
    img = np.full((120, 160, 3), 90, np.uint8)
    res = restore_photo(img, lambda x: x, SIZE, upscale=2, detect=DetectOptions(upsample=0))
    assert res.faces == [] and res.images[0].shape == (240, 320, 3)
    assert np.abs(res.images[0].astype(int) - 90).max() <= 1


def test_aligned_mode(face_files: list[Path]) -> None:
    face = load_rgb(face_files[0])  # 128 px
    res = restore_photo(face, lambda x: x, 128, aligned=True, samples=2)
    assert len(res.faces) == 1 and len(res.images) == 2
    np.testing.assert_array_equal(res.images[0], face)  # no resize, no colour match, no paste
    res = restore_photo(face, lambda x: x, 256, aligned=True)
    assert res.images[0].shape == (128, 128, 3)  # the face's own size, not the model's
    res = restore_photo(face, lambda x: x, 256, aligned=True, detail=False)
    assert res.images[0].shape == (256, 256, 3)  # the plain rule: the model's size


def test_identity_similarity_and_guard() -> None:
    img = load_rgb(EXAMPLES / "john2.jpg")
    res = restore_photo(img, lambda x: x, SIZE, identity_fn=pooled_identity)
    assert res.faces[0].identity[0] == pytest.approx(1.0, abs=1e-5)
    # negation: similarity -1; the half-way blend is grey (similarity 0): the input is kept
    res = restore_photo(img, lambda x: -x, SIZE, identity_fn=pooled_identity, identity_guard=0.5)
    f = res.faces[0]
    assert f.identity[0] == pytest.approx(-1.0, abs=1e-4) and f.guard == ["kept input"]
    assert psnr(res.images[0], img) > 35.0
    # a fixed perturbation: choose T between its similarity and that of the half-way blend
    pattern = 0.8 * torch.randn((1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(3))
    pattern = torch.nn.functional.interpolate(pattern[:, :, ::32, ::32], size=SIZE)

    def perturb(x: torch.Tensor) -> torch.Tensor:
        return (x + pattern).clamp(-1, 1)

    x = to_tensor(res.faces[0].model_crop)  # what the model saw (at SIZE)
    full = torch.cosine_similarity(pooled_identity(x), pooled_identity(perturb(x)))
    half = torch.cosine_similarity(pooled_identity(x), pooled_identity(0.5 * (x + perturb(x))))
    assert full < half
    t = float(full + half) / 2
    res = restore_photo(img, perturb, SIZE, identity_fn=pooled_identity, identity_guard=t)
    f = res.faces[0]
    assert f.guard == ["blended"] and f.identity[0] < t <= f.identity_final[0]
    with pytest.raises(ValueError):
        restore_photo(img, lambda x: x, SIZE, identity_guard=0.5)


def test_dlib_identity_stand_in(kit) -> None:
    import cv2

    res = restore_photo(kit, lambda x: x, 512, identity_fn=dlib_identity)
    assert all(f.identity[0] > 0.999 for f in res.faces)

    def blur(x: torch.Tensor) -> torch.Tensor:
        arr = x.permute(0, 2, 3, 1).numpy()
        return torch.from_numpy(np.stack([cv2.GaussianBlur(a, (0, 0), 12) for a in arr])).permute(
            0, 3, 1, 2
        )

    res_blur = restore_photo(kit, blur, 512, identity_fn=dlib_identity)
    assert all(f.identity[0] < 0.99 for f in res_blur.faces)  # measured ~0.93


def test_model_restorer_wraps_generator_call() -> None:
    calls = []

    def fake_model(x: torch.Tensor, noise_scale: float, generator: torch.Generator) -> torch.Tensor:
        calls.append(noise_scale)
        return x + noise_scale * 0.01 * torch.randn(x.shape, generator=generator)

    a = model_restorer(fake_model, noise_scale=0.5, seed=1)(torch.zeros(1, 3, 8, 8))
    b = model_restorer(fake_model, noise_scale=0.5, seed=1)(torch.zeros(1, 3, 8, 8))
    torch.testing.assert_close(a, b)
    assert calls == [0.5, 0.5]
