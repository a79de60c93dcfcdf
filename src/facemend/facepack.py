"""Face packs: many aligned faces in one file, for copying training data to another machine.

A pack is an uncompressed NumPy .npz (read with `allow_pickle=False`, so loading runs no code):
  format   () str       "facemend-faces/1"
  data     (N,) uint8   the faces' encoded bytes (JPEG), one after another
  offsets  (F+1,) int64 face i is data[offsets[i]:offsets[i+1]]
  names    (M,) uint8   the faces' paths relative to their data folder, UTF-8, joined by "\\n"
Names are the relative paths of the folders the faces came from, so the train/validation split
(by hash of that path, `data.split_files`) is the same as from the folders.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

PACK_SUFFIX = ".pack"
PACK_FORMAT = "facemend-faces/1"
OVERHEAD_BYTES = 64 * 1024  # the .npz's zip headers and array headers, with room to spare


def is_pack(path: str | Path) -> bool:
    """True for a path that names a face pack (it ends in .pack)."""
    return Path(path).suffix.lower() == PACK_SUFFIX


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes (Pillow, default 4:2:0 chroma subsampling)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class FacePack:
    """A face pack read into memory: `names[i]` and `read(i)` (the encoded bytes of face i)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with np.load(self.path, allow_pickle=False) as z:
                fmt = str(z["format"]) if "format" in z.files else None
                if fmt == PACK_FORMAT:
                    self.data = np.ascontiguousarray(z["data"], dtype=np.uint8)
                    self.offsets = z["offsets"].astype(np.int64)
                    names = bytes(z["names"].astype(np.uint8)).decode("utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: face pack not found") from None
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as e:
            # ValueError: not an .npz, pickled arrays, bad UTF-8; TypeError: an .npy file
            raise ValueError(f"{self.path}: not a readable face pack ({e})") from None
        if fmt != PACK_FORMAT:
            raise ValueError(f"{self.path}: not a face pack (format {fmt!r}, "
                             f"expected {PACK_FORMAT!r})")
        self.names = names.split("\n") if names else []
        o = self.offsets
        if (len(o) != len(self.names) + 1 or (len(o) and (o[0] != 0 or o[-1] != len(self.data)))
                or np.any(np.diff(o) < 0)):
            raise ValueError(f"{self.path}: inconsistent face pack ({len(self.names)} names, "
                             f"{len(o)} offsets, {len(self.data)} bytes)")

    def __len__(self) -> int:
        return len(self.names)

    def read(self, i: int) -> bytes:
        """The encoded bytes of face i."""
        return self.data[self.offsets[i]:self.offsets[i + 1]].tobytes()


def pack_size(blobs: Iterable[bytes], names: Iterable[str]) -> int:
    """Bytes that a pack of these faces takes on disk, at most (headers included)."""
    blobs, names = list(blobs), list(names)
    return (sum(map(len, blobs)) + 8 * (len(blobs) + 1)
            + len("\n".join(names).encode("utf-8")) + OVERHEAD_BYTES)


def write_pack(path: str | Path, faces: list[tuple[str, bytes]]) -> int:
    """Write (name, encoded bytes) pairs as a face pack, atomically; returns the file's size."""
    p = Path(path)
    if any("\n" in name for name, _ in faces):
        raise ValueError("a face name contains a line break")
    offsets = np.zeros(len(faces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for _, b in faces])
    data = np.frombuffer(b"".join(b for _, b in faces), dtype=np.uint8)
    names = np.frombuffer("\n".join(n for n, _ in faces).encode("utf-8"), dtype=np.uint8)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, format=np.array(PACK_FORMAT), data=data, offsets=offsets, names=names)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p.stat().st_size
