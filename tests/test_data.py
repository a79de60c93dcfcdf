"""FaceFolder, split_files and the training loader (StepBatches + EpochIndexed) on real faces."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from facemend.data import FaceFolder, split_files, worker_context
from facemend.training.schedule import EpochIndexed, StepBatches

H = 32
pytestmark = pytest.mark.filterwarnings("ignore:skipping unreadable training image")


@pytest.fixture(scope="module")
def face_dir(face_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real faces (PNG, JPEG and a 256 px copy; one subfolder) and one corrupt file."""
    root = tmp_path_factory.mktemp("faces")
    (root / "sub").mkdir()
    for i, p in enumerate(face_files[:6]):
        shutil.copy(p, root / p.name)
        img = Image.open(p)
        if i < 4:
            img.save(root / "sub" / f"{p.stem}.jpg", quality=90)
        else:
            img.resize((256, 256), Image.Resampling.LANCZOS).save(root / "sub" / f"{p.stem}.png")
    (root / "sub" / "000000_corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    (root / "notes.txt").write_text("not an image")
    return root


def test_items_shapes_and_ranges(face_dir: Path) -> None:
    ds = FaceFolder(face_dir, H, seed=0)
    assert len(ds) == 13  # 12 faces + the corrupt file (checked lazily)
    item = ds[0]
    assert item["lq"].shape == (3, H, H) and item["hq"].shape == (3, H, H)
    assert item["lq"].dtype == torch.float32
    for k in ("lq", "hq"):
        assert item[k].min() >= -1.0 and item[k].max() <= 1.0
    assert isinstance(item["index"], int)
    assert not torch.equal(item["lq"], item["hq"])


def test_corrupt_file_skipped_with_one_warning(face_dir: Path) -> None:
    ds = FaceFolder(face_dir, H, seed=0)
    bad = next(i for i, f in enumerate(ds.files) if "corrupt" in f.name)
    with pytest.warns(UserWarning, match="000000_corrupt.jpg") as rec:
        item = ds[bad]
    assert len([w for w in rec if "corrupt" in str(w.message)]) == 1
    assert item["index"] == (bad + 1) % len(ds) and ds.skipped == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second visit warns no more
        assert ds[bad]["index"] == (bad + 1) % len(ds)
    assert ds.skipped == 1


def test_reproducible_across_constructions_and_epochs(face_dir: Path) -> None:
    a, b = FaceFolder(face_dir, H, seed=5), FaceFolder(face_dir, H, seed=5)
    for i in (0, 3, 7):
        assert torch.equal(a[i]["lq"], b[i]["lq"]) and torch.equal(a[i]["hq"], b[i]["hq"])
    lq0 = a[3]["lq"]
    a.set_epoch(1)
    assert not torch.equal(a[3]["lq"], lq0)
    assert not torch.equal(FaceFolder(face_dir, H, seed=6)[3]["lq"], lq0)


def test_flip_is_horizontal(face_dir: Path) -> None:
    flipped = FaceFolder(face_dir, H, seed=0, flip=True)
    plain = FaceFolder(face_dir, H, seed=0, flip=False)
    seen = set()
    for i in range(8):
        f, p = flipped[i]["hq"], plain[i]["hq"]
        seen.add(torch.equal(f, p))
        assert torch.equal(f, p) or torch.equal(f, p.flip(-1))
    assert seen == {True, False}


class _ThreadCounts(Dataset):
    """Reports the thread limits of the process that loads each item."""

    def __len__(self) -> int:
        return 4

    def set_epoch(self, epoch: int) -> None:
        pass

    def __getitem__(self, index: int) -> dict[str, int]:
        import cv2

        return {"torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()}


def _loader(ds: Dataset, workers: int, start: int, stop: int) -> DataLoader:
    """The training loop's loader: StepBatches over an EpochIndexed dataset."""
    sampler = StepBatches(len(ds), 4, seed=11, start=start, stop=stop)  # type: ignore[arg-type]
    return DataLoader(EpochIndexed(ds), batch_sampler=sampler, num_workers=workers,
                      multiprocessing_context=worker_context(workers))


def test_loader_same_with_0_and_2_workers(face_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b0 = list(_loader(FaceFolder(face_dir, H, seed=2), 0, 0, 6))
        b2 = list(_loader(FaceFolder(face_dir, H, seed=2), 2, 0, 6))
    assert len(b0) == len(b2) == 6  # two epochs of 13 // 4 = 3 full batches
    for x, y in zip(b0, b2, strict=True):
        assert torch.equal(x["index"], y["index"])
        assert torch.equal(x["lq"], y["lq"]) and torch.equal(x["hq"], y["hq"])
    assert b0[0]["lq"].shape == (4, 3, H, H)
    # Epoch 1 is another permutation of the same faces.
    first = torch.cat([b["index"] for b in b0[:3]])
    second = torch.cat([b["index"] for b in b0[3:]])
    assert not torch.equal(first, second)


def test_loader_resumes_mid_run_exactly(face_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = list(_loader(FaceFolder(face_dir, H, seed=2), 0, 0, 5))
        tail = list(_loader(FaceFolder(face_dir, H, seed=2), 0, 2, 5))
    for x, y in zip(whole[2:], tail, strict=True):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["lq"], y["lq"])


def test_loader_workers_use_one_thread() -> None:
    (batch,) = list(_loader(_ThreadCounts(), 1, 0, 1))
    assert batch["torch"].tolist() == [1] * 4 and batch["cv2"].tolist() == [1] * 4


def test_loader_rejects_batch_larger_than_data(face_dir: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        StepBatches(len(FaceFolder(face_dir, H)), 64, seed=0, start=0, stop=1)


def test_split_deterministic_and_disjoint() -> None:
    rels = [Path(f"{i // 100:02d}") / f"{i:06d}.jpg" for i in range(3000)]
    train, val = split_files(rels, 0.1)
    assert split_files(rels, 0.1) == (train, val)
    assert not set(train) & set(val) and len(train) + len(val) == len(rels)
    assert 0.07 < len(val) / len(rels) < 0.13
    # Per-file rule: a subset splits the same way.
    _, sub_val = split_files(rels[::3], 0.1)
    assert set(sub_val) == set(val) & set(rels[::3])
    assert split_files(rels, 0.0)[1] == [] and split_files(rels, 1.0)[0] == []


def test_facefolder_split_uses_relative_paths(face_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(face_dir, moved)
    kw = dict(split="val", val_fraction=0.5)
    v1 = FaceFolder(face_dir, H, **kw).relpaths  # type: ignore[arg-type]
    v2 = FaceFolder(moved, H, **kw).relpaths  # type: ignore[arg-type]
    t1 = FaceFolder(face_dir, H, split="train", val_fraction=0.5).relpaths
    assert v1 == v2 and v1 and t1 and not set(v1) & set(t1)
    assert len(v1) + len(t1) == 13


def test_multiple_roots_and_generated_images(tmp_path: Path, face_dir: Path) -> None:
    from facemend.io import save_rgb

    gen = tmp_path / "gen"
    rng = np.random.default_rng(0)
    for i in range(3):
        save_rgb(gen / f"g{i}.webp", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    ds = FaceFolder([face_dir, gen], H, seed=0)
    assert len(ds) == 16
    assert ds[15]["hq"].shape == (3, H, H)  # non-square: centre crop + Lanczos
    with pytest.raises(FileNotFoundError, match="missing"):
        FaceFolder(tmp_path / "missing", H)
