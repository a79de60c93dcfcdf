"""Face detection, landmarks, 5-point alignment, the FFHQ rule and `facemend align`."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest

from facemend.inference.align import (
    TEMPLATE_512,
    align_face,
    align_ffhq,
    alignment_matrix,
    apply_affine,
    inverse_affine,
    robust_similarity_transform,
    similarity_transform,
    template,
    template_from_landmarks,
    warp_affine,
)
from facemend.inference.detect import DetectOptions, Face, detect_faces, select_faces
from facemend.io import list_images, load_rgb

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "photos"
FACE_COUNTS = {"kit_with_rose.jpg": 2, "obama_and_biden.jpg": 3, "john2.jpg": 1, "obama1.jpg": 1}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.fixture(scope="module")
def detections() -> dict[str, tuple[np.ndarray, list[Face]]]:
    out = {}
    for name in FACE_COUNTS:
        img = load_rgb(EXAMPLES / name)
        out[name] = (img, detect_faces(img, DetectOptions(landmarks68=True)))
    return out


@pytest.mark.parametrize("name", sorted(FACE_COUNTS))
def test_detects_known_face_count(detections, name: str) -> None:
    img, faces = detections[name]
    assert len(faces) == FACE_COUNTS[name]
    sizes = [f.size for f in faces]
    assert sizes == sorted(sizes, reverse=True)  # largest first
    for f in faces:
        x0, y0, x1, y1 = f.box
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
        assert f.landmarks5.shape == (5, 2) and f.landmarks68 is not None
        assert f.landmarks68.shape == (68, 2)
        pad = 0.1 * f.size
        for lm in (f.landmarks5, f.landmarks68[17:]):  # 68: all but the jaw line
            assert np.all(lm[:, 0] >= x0 - pad) and np.all(lm[:, 0] <= x1 + pad)
            assert np.all(lm[:, 1] >= y0 - pad) and np.all(lm[:, 1] <= y1 + pad)
        # dlib order: image-right eye points have larger x than image-left eye points
        assert f.landmarks5[0, 0] > f.landmarks5[1, 0] > f.landmarks5[3, 0] > f.landmarks5[2, 0]


def test_no_face_in_face_free_images() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:480, :640]
    grad = np.stack([xx / 640 * 255, yy / 480 * 255, (xx + yy) / 1120 * 255], axis=-1)
    noisy = np.clip(grad + rng.normal(0, 20, grad.shape), 0, 255).astype(np.uint8)
    flat = np.full((300, 400, 3), 128, np.uint8)
    for img in (noisy, flat):
        assert detect_faces(img) == []
        assert detect_faces(img, DetectOptions(detector="haar")) == []


def test_haar_and_cnn_detectors_agree_with_hog(detections) -> None:
    img, faces = detections["john2.jpg"]
    for det in ("haar", "cnn"):
        other = detect_faces(img, DetectOptions(detector=det, upsample=0))
        assert len(other) >= 1
        assert iou(other[0].box, faces[0].box) > 0.5, det


def test_max_side_and_min_face_size(detections) -> None:
    img, faces = detections["kit_with_rose.jpg"]
    small = detect_faces(img, DetectOptions(max_side=400))
    assert len(small) == 2 and iou(small[0].box, faces[0].box) > 0.6
    big_only = detect_faces(img, DetectOptions(min_face_size=0.5 * (faces[0].size + faces[1].size)))
    assert len(big_only) == 1


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def test_select_faces() -> None:
    lm = np.zeros((5, 2), np.float32)
    faces = [Face((0, 0, 100, 100), 1.0, lm), Face((180, 130, 220, 170), 1.0, lm),
             Face((300, 0, 330, 30), 1.0, lm)]
    assert select_faces(faces) == faces
    assert select_faces(faces, face_index=1) == [faces[1]]
    assert select_faces(faces, face_index=5) == []
    assert select_faces(faces, only_center_face=True, image_shape=(300, 400, 3)) == [faces[1]]
    with pytest.raises(ValueError):
        select_faces(faces, face_index=-1)


def test_similarity_transform_recovers_known_map() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 300, (5, 2))
    ang, s, t = 0.3, 1.7, np.array([12.0, -40.0])
    a = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ a.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], a, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-7)
    np.testing.assert_allclose(apply_affine(inverse_affine(m), dst), src, atol=1e-7)
    bad = dst.copy()
    bad[4] += 60.0  # one landmark badly off
    err_ls = np.abs(similarity_transform(src, bad)[:, :2] - a).max()
    err_robust = np.abs(robust_similarity_transform(src, bad)[:, :2] - a).max()
    assert err_robust < 0.3 * err_ls


def test_template_matches_measurement_on_ffhq_aligned_faces(shared_data: Path) -> None:
    files = sorted((shared_data / "hq512").glob("ffhq_*.png"))
    files += sorted((shared_data / "celeba" / "eval256").glob("*.jpg"))[:40]
    lms = []
    for f in files:
        img = load_rgb(f)
        faces = detect_faces(img)
        if len(faces) == 1:
            lms.append((faces[0].landmarks5 + 0.5) * 512 / img.shape[0] - 0.5)
    assert len(lms) >= 40
    measured = template_from_landmarks(np.stack(lms), 512)
    err = np.linalg.norm(measured - TEMPLATE_512, axis=1)
    assert err[:4].max() < 3.0 and err[4] < 6.0, err  # eyes within 3 px, nose within 6 px
    np.testing.assert_allclose(template(512), TEMPLATE_512)
    np.testing.assert_allclose(template(256), (TEMPLATE_512 + 0.5) / 2 - 0.5)


@pytest.mark.parametrize("name", ["kit_with_rose.jpg", "obama1.jpg"])
def test_align_then_inverse_reproduces_face_region(detections, name: str) -> None:
    img, faces = detections[name]
    for f in faces:
        crop, m = align_face(img, f.landmarks5, 512)
        assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
        # landmarks land on the template
        assert np.abs(apply_affine(m, f.landmarks5) - template(512)).max() < 0.12 * 512
        back = warp_affine(crop, inverse_affine(m), (img.shape[1], img.shape[0]))
        x0, y0, x1, y1 = (int(v) for v in f.box)
        assert psnr(back[y0:y1, x0:x1], img[y0:y1, x0:x1]) > 35.0


def test_five_point_alignment_agrees_with_ffhq_rule(detections) -> None:
    img, faces = detections["obama_and_biden.jpg"]
    for f in faces[:2]:
        m5 = alignment_matrix(f.landmarks5, 256)
        crop, m68 = align_ffhq(img, f.landmarks68, 256)
        assert crop.shape == (256, 256, 3)
        s5, s68 = np.sqrt(np.linalg.det(m5[:, :2])), np.sqrt(np.linalg.det(m68[:, :2]))
        assert abs(s5 / s68 - 1) < 0.08
        centre = apply_affine(inverse_affine(m68), np.array([[127.5, 127.5]]))
        assert np.abs(apply_affine(m5, centre) - 127.5).max() < 0.06 * 256
        # the FFHQ crop equals warping the photo by the matrix it reports
        ref = warp_affine(img, m68, (256, 256))
        assert psnr(crop[32:-32, 32:-32], ref[32:-32, 32:-32]) > 25.0


def test_align_command(tmp_path: Path) -> None:
    from facemend.commands import align as cmd

    in_dir = tmp_path / "in"
    in_dir.mkdir()
    for name in ("kit_with_rose.jpg", "john2.jpg"):
        (in_dir / name).write_bytes((EXAMPLES / name).read_bytes())
    (in_dir / "broken.jpg").write_bytes(b"not a jpeg")
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    args = parser.parse_args([str(in_dir), str(tmp_path / "out"), "--size", "128"])
    assert cmd.run(args) == 1  # one bad file, the rest aligned
    with open(tmp_path / "out" / "faces.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    assert {r["source"] for r in rows} == {"kit_with_rose.jpg", "john2.jpg"}
    crops = list_images(tmp_path / "out")
    assert len(crops) == 3 and all(load_rgb(c).shape == (128, 128, 3) for c in crops)
    kit = [r for r in rows if r["source"] == "kit_with_rose.jpg"]
    assert [r["face_index"] for r in kit] == ["0", "1"]
    assert float(kit[0]["source_face_size"]) > float(kit[1]["source_face_size"]) > 100
