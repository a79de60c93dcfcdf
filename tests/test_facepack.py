"""Face packs: `facemend pack` and FaceFolder reading a .pack like the folder it came from."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facemend.cli import main
from facemend.data import FaceFolder, find_faces, split_key_fraction
from facemend.facepack import FacePack, write_pack
from facemend.io import load_rgb

H = 32


@pytest.fixture(scope="module")
def face_dir(face_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 7 test faces: PNGs at the top, JPEG copies of four in a subfolder."""
    root = tmp_path_factory.mktemp("faces")
    (root / "sub").mkdir()
    for i, p in enumerate(face_files):
        shutil.copy(p, root / p.name)
        if i < 4:
            Image.open(p).convert("RGB").save(root / "sub" / f"{p.stem}.jpg", quality=95)
    return root


def jpeg_round_trip(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_pack_of_the_files_bytes_gives_the_folders_items(face_dir: Path, tmp_path: Path) -> None:
    entries = find_faces(face_dir)
    pack = tmp_path / "raw.pack"
    write_pack(pack, [(rel.as_posix(), (root / rel).read_bytes()) for root, rel in entries])
    for kw in ({}, {"split": "train", "val_fraction": 0.5}, {"split": "val", "val_fraction": 0.5}):
        a = FaceFolder(face_dir, H, seed=3, **kw)  # type: ignore[arg-type]
        b = FaceFolder(pack, H, seed=3, **kw)  # type: ignore[arg-type]
        assert a.relpaths == b.relpaths and len(a) > 0
        for i in range(len(a)):
            ia, ib = a[i], b[i]
            assert torch.equal(ia["hq"], ib["hq"]) and torch.equal(ia["lq"], ib["lq"])
    train_rel = FaceFolder(pack, H, split="train", val_fraction=0.5).relpaths
    val_rel = FaceFolder(pack, H, split="val", val_fraction=0.5).relpaths
    assert not set(train_rel) & set(val_rel) and len(train_rel) + len(val_rel) == 11


def test_pack_command_stores_q90_faces_with_the_folders_names(face_dir: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "gpu-data" / "faces.pack"
    assert main(["pack", "--data", str(face_dir), "--out", str(out)]) == 0
    pack = FacePack(out)
    folder = FaceFolder(face_dir, 128)
    assert pack.names == [r.as_posix() for r in folder.relpaths]
    packed = FaceFolder(out, 128, flip=False)
    for i, f in enumerate(folder.files):
        src = load_rgb(f)
        got = ((packed[i]["hq"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        assert np.array_equal(got, jpeg_round_trip(src, 90)), f  # exactly q 90 of the source
        mse = np.mean((got.astype(float) - src) ** 2)
        assert 10 * np.log10(255**2 / mse) > 35, f
    for split in ("train", "val"):
        kw = {"split": split, "val_fraction": 0.4}
        assert (FaceFolder(out, H, **kw).relpaths  # type: ignore[arg-type]
                == FaceFolder(face_dir, H, **kw).relpaths)  # type: ignore[arg-type]


def test_pack_resolution_and_budget_keep_the_lowest_split_keys(
        face_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full.pack"
    assert main(["pack", "--data", str(face_dir), "--out", str(full), "--resolution", "64"]) == 0
    whole = FacePack(full)
    assert Image.open(io.BytesIO(whole.read(0))).size == (64, 64)
    sizes = np.diff(whole.offsets)
    by_key = sorted(range(len(whole)), key=lambda i: split_key_fraction(whole.names[i]))
    fit = 64 * 1024 + sum(int(sizes[i]) + 8 + len(whole.names[i]) + 1 for i in by_key[:5]) + 10
    capped = tmp_path / "capped.pack"
    assert main(["pack", "--data", str(face_dir), "--out", str(capped), "--resolution", "64",
                 "--max-mib", str(fit / 2**20)]) == 0
    assert "6 faces left out" in capsys.readouterr().out
    assert capped.stat().st_size <= fit
    kept = FacePack(capped).names
    assert set(kept) == {whole.names[i] for i in by_key[:5]}
    assert kept == [n for n in whole.names if n in set(kept)]  # folder order


def test_two_folders_with_the_same_names_and_an_unreadable_file(
        face_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    shutil.copytree(face_dir, other)
    (other / "sub" / "zz_corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "two.pack"
    assert main(["pack", "--data", str(face_dir), "--data", str(other), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "zz_corrupt.jpg" in captured.err and "1 unreadable" in captured.out
    assert len(FacePack(out)) == 22
    both = FaceFolder([face_dir, other], H, split="val", val_fraction=0.5)
    assert FaceFolder(out, H, split="val", val_fraction=0.5).relpaths == [
        r for r in both.relpaths if r.name != "zz_corrupt.jpg"]


def test_bad_packs_and_arguments_are_one_line_errors(
        face_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "fake.pack"
    fake.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="fake.pack: not a readable face pack"):
        FaceFolder(fake, H)
    pickled = tmp_path / "pickled.pack"
    np.savez(pickled.open("wb"), format=np.array("facemend-faces/1"),
             data=np.zeros(1, np.uint8), offsets=np.array([0, 1]),
             names=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled.pack"):
        FacePack(pickled)
    npy = tmp_path / "array.pack"
    np.save(npy.open("wb"), np.zeros(3))
    with pytest.raises(ValueError, match="array.pack: not a readable face pack"):
        FacePack(npy)
    with pytest.raises(FileNotFoundError, match="missing.pack"):
        FaceFolder(tmp_path / "missing.pack", H)
    assert main(["pack", "--data", str(face_dir), "--out", str(tmp_path / "x.npz")]) == 2
    assert main(["pack", "--data", str(tmp_path / "nowhere"), "--out", str(fake)]) == 2
    err = capsys.readouterr().err
    assert "must end in .pack" in err and "nowhere" in err
    assert fake.read_bytes() == b"not a zip"  # untouched by the failed run
