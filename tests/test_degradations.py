"""Eq. 13 degradation, SR inputs and the `facemend degrade` command."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facemend.commands import degrade as degrade_cmd
from facemend.config import DegradationConfig
from facemend.degradations import (
    DegradationParams,
    degrade,
    degrade_with,
    sample_params,
    scaled_kernel_size,
    sr_downsample,
    sr_input,
)
from facemend.io import load_rgb, save_rgb


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def blockiness(img: np.ndarray) -> float:
    """Mean luma step across 8-px block boundaries / mean step elsewhere (1 = no blocking)."""
    g = img.astype(np.float64).mean(axis=2)
    dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
    bx, by = np.arange(dx.shape[1]) % 8 == 7, np.arange(dy.shape[0]) % 8 == 7
    return float((dx[:, bx].mean() + dy[by].mean()) / (dx[:, ~bx].mean() + dy[~by].mean()))


@pytest.fixture(scope="module")
def face512(face_files: list[Path]) -> np.ndarray:
    """A shipped 128 px test face enlarged to 512 px (Lanczos)."""
    face = Image.fromarray(load_rgb(face_files[0]))
    return np.asarray(face.resize((512, 512), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def face128(face_files: list[Path]) -> np.ndarray:
    return load_rgb(face_files[0])


def test_params_in_range_over_many_seeds() -> None:
    cfg = DegradationConfig()
    ps = [sample_params(np.random.default_rng(s), cfg) for s in range(2000)]
    sig, sc, no, jp = (np.array([getattr(p, f) for p in ps]) for f in
                       ("sigma", "scale", "noise", "jpeg"))
    assert sig.min() >= 0.2 and sig.max() <= 10.0 and sig.max() - sig.min() > 9.0
    assert sc.min() >= 1.0 and sc.max() <= 8.0 and sc.max() - sc.min() > 6.5
    assert no.min() >= 0.0 and no.max() <= 15.0 and no.max() - no.min() > 14.0
    assert set(jp.tolist()) == set(range(60, 101))  # integer, both ends included
    assert all(isinstance(p.jpeg, int) for p in ps[:10])
    assert set(ps[0].as_dict()) == {"sigma", "scale", "noise", "jpeg"}
    # At 32 px, r is clamped so that the downsampled side stays >= min_side (8): r <= 4.
    small = [sample_params(np.random.default_rng(s), cfg, side=32).scale for s in range(500)]
    assert max(small) == pytest.approx(4.0) and min(small) >= 1.0


def test_kernel_scales_with_resolution() -> None:
    assert scaled_kernel_size(512) == 41
    assert scaled_kernel_size(128) % 2 == 1 and 9 <= scaled_kernel_size(128) <= 11
    assert scaled_kernel_size(32) == 3


def test_same_seed_same_bytes(face128: np.ndarray) -> None:
    a, pa = degrade(face128, np.random.default_rng(7))
    b, pb = degrade(face128, np.random.default_rng(7))
    c, _ = degrade(face128, np.random.default_rng(8))
    assert pa == pb and a.tobytes() == b.tobytes()
    assert a.shape == face128.shape and a.dtype == np.uint8
    assert a.tobytes() != c.tobytes()


def test_mildest_params_nearly_identity(face512: np.ndarray) -> None:
    out = degrade_with(face512, DegradationParams(0.2, 1.0, 0.0, 100), np.random.default_rng(0))
    assert psnr(out, face512) > 40.0


def test_strongest_params_degrade_a_lot(face512: np.ndarray) -> None:
    out = degrade_with(face512, DegradationParams(10.0, 8.0, 15.0, 60), np.random.default_rng(0))
    assert out.shape == face512.shape
    assert psnr(out, face512) < 30.0


def test_jpeg_q60_leaves_block_artefacts(face512: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    q60 = degrade_with(face512, DegradationParams(0.2, 1.0, 0.0, 60), rng)
    q100 = degrade_with(face512, DegradationParams(0.2, 1.0, 0.0, 100), rng)
    assert blockiness(q60) > blockiness(face512) + 0.2
    assert blockiness(q60) > blockiness(q100) + 0.2


def test_blur_scales_with_resolution(face512: np.ndarray) -> None:
    """The same sigma (512-px units) blurs a 128-px face like the 512 face downsized."""
    import cv2

    p = DegradationParams(8.0, 1.0, 0.0, 100)
    big = degrade_with(face512, p, np.random.default_rng(0))
    small_face = cv2.resize(face512, (128, 128), interpolation=cv2.INTER_AREA)
    small = degrade_with(small_face, p, np.random.default_rng(0))
    ref = cv2.resize(big, (128, 128), interpolation=cv2.INTER_AREA)
    assert psnr(small, ref) > 40.0
    assert psnr(small, ref) > psnr(small_face, ref) + 10.0


def test_sr_x8_keeps_only_64px_information(face512: np.ndarray) -> None:
    assert sr_downsample(face512, 8).shape == (64, 64, 3)
    assert sr_downsample(face512, 16).shape == (32, 32, 3)
    x8 = sr_input(face512, 8)
    assert x8.shape == face512.shape and x8.dtype == np.uint8
    assert psnr(sr_input(x8, 8), x8) > 38.0  # nothing left above 64 px
    assert psnr(x8, face512) < 32.0  # while the original had much more
    assert psnr(sr_input(face512, 16), face512) < psnr(x8, face512)


def _run_cmd(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    degrade_cmd.add_arguments(parser)
    return degrade_cmd.run(parser.parse_args(argv))


def _make_folder(root: Path, face: np.ndarray) -> None:
    save_rgb(root / "a.png", face)
    save_rgb(root / "sub" / "b.jpg", face[:, ::-1].copy())
    save_rgb(root / "c.png", face[::-1].copy())


def test_degrade_command_writes_files_and_csv(tmp_path: Path, face128: np.ndarray,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _make_folder(src, face128)
    (src / "broken.jpg").write_bytes(b"not a jpeg at all")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    assert _run_cmd([str(src), str(out), "--seed", "3", "--resolution", "64"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith(str(src / "broken.jpg") + ":") for line in lines)
    for rel in ("a.png", "sub/b.png", "c.png"):
        img = load_rgb(out / rel)
        assert img.shape == (64, 64, 3)
    rows = list(csv.DictReader((out / "params.csv").open()))
    assert [r["file"] for r in rows] == ["a.png", "c.png", "sub/b.jpg"]
    assert list(rows[0]) == ["file", "sigma", "scale", "noise", "jpeg"]
    for r in rows:
        assert 0.2 <= float(r["sigma"]) <= 10 and 60 <= int(r["jpeg"]) <= 100
    assert before == {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}

    # Deterministic per file, independent of the other files in the folder.
    (src / "broken.jpg").unlink()
    (src / "c.png").unlink()
    out2 = tmp_path / "out2"
    assert _run_cmd([str(src), str(out2), "--seed", "3", "--resolution", "64"]) == 0
    assert (out2 / "a.png").read_bytes() == (out / "a.png").read_bytes()
    assert (out2 / "sub" / "b.png").read_bytes() == (out / "sub" / "b.png").read_bytes()


def test_degrade_command_sr_and_refusals(tmp_path: Path, face128: np.ndarray) -> None:
    src = tmp_path / "in"
    _make_folder(src, face128)
    out = tmp_path / "sr"
    assert _run_cmd([str(src), str(out), "--seed", "0", "--task", "sr16"]) == 0
    assert np.array_equal(load_rgb(out / "a.png"), sr_input(face128, 16))
    assert _run_cmd([str(src), str(src), "--seed", "0"]) == 2
    assert _run_cmd([str(src), str(src / "inner"), "--seed", "0"]) == 2
    assert not (src / "inner").exists()
    assert _run_cmd([str(tmp_path / "missing"), str(out), "--seed", "0"]) == 2
