"""`facemend restore` end to end: folders with bad files, outputs, report, seeds and samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facemend.cli import main

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "photos" / "john2.jpg"  # one face


@pytest.fixture(scope="module")
def weights(noisy_weights: Path) -> Path:
    """The tiny random model with its noise on, so that seeds and samples differ."""
    return noisy_weights


def restore(*args: str) -> int:
    return main(["restore", *args, "--no-progress", "--threads", "1"])


def test_folder_with_face_no_face_and_corrupt_file(weights: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PHOTO, src / "face.jpg")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).save(src / "noface.png")
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    rc = restore(str(src), "-o", str(tmp_path / "out"), "--weights", str(weights))
    assert rc == 1
    captured = capsys.readouterr()
    errors = [ln for ln in captured.err.splitlines() if ln.startswith(str(src))]
    assert len(errors) == 1 and "corrupt.jpg" in errors[0]
    assert "1 failed" in captured.out
    imgs = sorted(p.name for p in (tmp_path / "out" / "restored_imgs").iterdir())
    assert imgs == ["face.jpg", "noface.png"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    by_name = {Path(f["file"]).name: f for f in report["files"]}
    assert set(by_name) == {"face.jpg", "noface.png", "corrupt.jpg"}
    assert by_name["corrupt.jpg"]["status"] == "error"
    assert len(by_name["face.jpg"]["faces"]) == 1 and by_name["noface.png"]["faces"] == []
    face = by_name["face.jpg"]["faces"][0]
    assert -1.0 <= face["identity"][0] <= 1.0
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # inputs untouched
    for sub in ("cropped_faces", "restored_faces", "cmp"):
        assert (tmp_path / "out" / sub / "face_00.png").is_file()


def faces_of(out: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((out / "restored_faces").glob("*.png"))]


def test_seed_samples_and_noise_scale(weights: Path, tmp_path: Path) -> None:
    common = [str(PHOTO), "--weights", str(weights), "--no-identity"]
    assert restore(*common, "-o", str(tmp_path / "a"), "--seed", "7") == 0
    assert restore(*common, "-o", str(tmp_path / "b"), "--seed", "7") == 0
    a, b = faces_of(tmp_path / "a"), faces_of(tmp_path / "b")
    assert len(a) == 1 and np.array_equal(a[0], b[0])
    assert restore(*common, "-o", str(tmp_path / "c"), "--samples", "3") == 0
    c = faces_of(tmp_path / "c")
    assert len(c) == 3
    assert all(not np.array_equal(c[i], c[j]) for i, j in [(0, 1), (0, 2), (1, 2)])
    assert len(list((tmp_path / "c" / "restored_imgs").iterdir())) == 3
    assert restore(*common, "-o", str(tmp_path / "d"), "--samples", "3",
                   "--noise-scale", "0") == 0
    d = faces_of(tmp_path / "d")
    assert all(np.array_equal(d[0], x) for x in d)


def test_aligned_mode_and_names_never_collide(weights: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    crop = np.asarray(Image.open(PHOTO).convert("RGB").resize((64, 64)))
    Image.fromarray(crop).save(src / "x.png")
    Image.fromarray(crop).save(src / "x.jpg")
    rc = restore(str(src / "*"), "--aligned", "-o", str(tmp_path / "out"), "--weights",
                 str(weights))
    assert rc == 0
    names = sorted(p.name for p in (tmp_path / "out" / "restored_faces").iterdir())
    assert names == ["x_jpg_00.png", "x_png_00.png"]
    assert not (tmp_path / "out" / "restored_imgs").exists()


def test_missing_input_and_bad_weights(weights: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    assert restore(str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "o"), "--weights",
                   str(weights)) == 1
    assert "nope.jpg: no such file" in capsys.readouterr().err
    assert restore(str(PHOTO), "-o", str(tmp_path / "o2"), "--weights", str(tmp_path)) == 2
    assert "no config.json" in capsys.readouterr().err
