"""Training data: folders of aligned faces -> (LQ, HQ) pairs with eq. 13 applied on the fly.

A data root is a folder (searched recursively) or a face pack (a file ending in .pack, written by
`facemend pack`, see `facepack`); a pack's faces keep their folder-relative names, so the
train/validation split is the same as from the folders they were packed from.

Reproducibility: sample `index` of epoch `epoch` draws its flip and degradation from
`np.random.default_rng([seed, epoch, index])`, so a batch depends only on (seed, epoch, indices),
not on the number of DataLoader workers or on which worker loads it. The sampler's order is seeded
too (`training.schedule.StepBatches`), and `training.schedule.EpochIndexed` sets the epoch per
item, so workers need no shared state.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import multiprocessing.context
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from facemend.config import DegradationConfig
from facemend.degradations import degrade
from facemend.facepack import FacePack, is_pack
from facemend.io import MAX_PIXELS_HINT, ImageError, decode_image, list_images, load_rgb, to_tensor

FACE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
PathLike = str | Path


def find_faces(roots: PathLike | Sequence[PathLike]) -> list[tuple[Path, Path]]:
    """(root, relative path) of every png/jpg/jpeg/webp under the roots (recursive, sorted)."""
    roots = [roots] if isinstance(roots, str | Path) else list(roots)
    out: list[tuple[Path, Path]] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: face folder not found")
        out += [(root, p.relative_to(root)) for p in list_images(root)
                if p.suffix.lower() in FACE_EXTENSIONS]
    return out


def split_key_fraction(key: str) -> float:
    """Stable hash of a string mapped to [0, 1): sha1, first 8 bytes, big-endian / 2**64."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def split_files(
    files: Sequence[PathLike], val_fraction: float
) -> tuple[list[PathLike], list[PathLike]]:
    """Train/validation split: file -> validation iff hash(posix path as given) < val_fraction.

    Pass paths relative to their data root so that the split does not depend on where the data
    lives (FaceFolder does). The rule is per file, so adding files never moves existing ones.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction={val_fraction}: must be in [0, 1]")
    train: list[PathLike] = []
    val: list[PathLike] = []
    for f in files:
        (val if split_key_fraction(Path(f).as_posix()) < val_fraction else train).append(f)
    return train, val


def load_face(path: Path, resolution: int) -> np.ndarray:
    """Read a face as (H, H, 3) uint8: centre-cropped to square, Pillow LANCZOS to `resolution`."""
    return square_face(load_rgb(path), resolution)


def square_face(img: np.ndarray, resolution: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, H, 3) uint8: centre-cropped to square, Pillow LANCZOS to H."""
    h, w = img.shape[:2]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[top:top + s, left:left + s]
    if img.shape[0] != resolution:
        pil = Image.fromarray(img).resize((resolution, resolution), Image.Resampling.LANCZOS)
        img = np.asarray(pil)
    return np.array(img)  # writable copy (Pillow arrays are read-only)


class FaceFolder(Dataset):
    """Aligned faces from one or more folders or face packs, degraded on the fly by eq. 13.

    Items: {"lq": (3, H, W) float32 in [-1, 1], "hq": (3, H, W) float32 in [-1, 1], "index": int},
    where "index" is the file actually used (it differs from the requested index when an unreadable
    file was replaced by the next good one). Unreadable files are found lazily: each is warned
    about once (one line naming the file) and counted in `skipped` (per process: DataLoader workers
    keep their own counts).
    """

    def __init__(
        self,
        roots: PathLike | Sequence[PathLike],
        resolution: int,
        *,
        degradation: DegradationConfig = DegradationConfig(),
        seed: int = 0,
        flip: bool = True,
        split: Literal["all", "train", "val"] = "all",
        val_fraction: float = 0.0,
    ) -> None:
        self._packs: dict[Path, FacePack] = {}
        entries: list[tuple[Path, Path, int]] = []  # (root, relative path, index in pack or -1)
        for root in map(Path, [roots] if isinstance(roots, str | Path) else roots):
            if is_pack(root):
                pack = self._packs.setdefault(root, FacePack(root))
                entries += [(root, Path(name), j) for j, name in enumerate(pack.names)]
            else:
                entries += [(r, rel, -1) for r, rel in find_faces(root)]
        if split != "all":
            train, val = split_files([rel for _, rel, _ in entries], val_fraction)
            keep = set(map(Path, train if split == "train" else val))
            entries = [e for e in entries if e[1] in keep]
        if not entries:
            raise ValueError(f"no face images ({', '.join(FACE_EXTENSIONS)}) for split '{split}' "
                             f"under {roots}")
        self.files = [root / rel for root, rel, _ in entries]
        self.relpaths = [rel for _, rel, _ in entries]
        self._packed = [(root, j) for root, _, j in entries]
        self.resolution = resolution
        self.degradation = degradation
        self.seed = seed
        self.flip = flip
        self.epoch = 0
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    @property
    def skipped(self) -> int:
        """Number of unreadable files met so far in this process."""
        return len(self._bad)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's degradations (part of each sample's seed)."""
        self.epoch = epoch

    def _load_good(self, index: int) -> tuple[int, np.ndarray]:
        """(file index, image) of `index` or, if unreadable, of the next readable file."""
        n = len(self.files)
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            try:
                return i, self._read(i)
            except ImageError as e:
                self._bad.add(i)
                msg = str(e).removesuffix(MAX_PIXELS_HINT)  # train has no --max-pixels
                warnings.warn(f"skipping unreadable training image {msg}", stacklevel=3)
        raise ValueError(f"no readable image among the {n} files under "
                         f"{', '.join(sorted({str(f.parent) for f in self.files}))[:300]}")

    def _read(self, i: int) -> np.ndarray:
        """Face i as (H, H, 3) uint8, from its file or from its pack; ImageError if unreadable."""
        root, j = self._packed[i]
        if j < 0:
            return load_face(self.files[i], self.resolution)
        img = decode_image(self._packs[root].read(j), str(self.files[i])).rgb
        return square_face(img, self.resolution)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        used, hq = self._load_good(index)  # (H, W, 3) uint8
        if self.flip and rng.random() < 0.5:
            hq = np.ascontiguousarray(hq[:, ::-1])
        lq, _ = degrade(hq, rng, self.degradation)  # (H, W, 3) uint8
        return {"lq": to_tensor(lq)[0], "hq": to_tensor(hq)[0], "index": used}


def one_thread_per_worker() -> None:
    """One thread for torch and OpenCV in a DataLoader worker (avoid oversubscribing cores)."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def worker_context(num_workers: int) -> multiprocessing.context.BaseContext | None:
    """'spawn' for DataLoader workers: forking a process that runs threads (a web server, torch's
    pools, dlib) can deadlock the children; spawned workers start clean (and work on macOS)."""
    return multiprocessing.get_context("spawn") if num_workers > 0 else None
