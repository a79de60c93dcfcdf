"""Uploads in, result files out: Pillow decoding with limits, and a temp store keyed by random ids.

Uploads are decoded from memory (never written under a client-chosen name): the format must be
one of `ALLOWED_FORMATS`, the pixel count at most `max_pixels` (checked from the header, before
decoding), EXIF orientation is applied. Results live in `root/ID/FILE` where ID is 32 hex chars
from `secrets` and FILE matches `FILE_RE`; both are checked against these patterns before any
path is built, so a request cannot name another file. The store keeps at most `max_results`
results, each for at most `ttl_s` seconds (oldest removed first, on every put and lookup).
"""

from __future__ import annotations

import io
import re
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
ID_RE = re.compile(r"^[0-9a-f]{32}$")
FILE_RE = re.compile(r"^(input|image_s\d{1,2}|face_\d{1,3}_(input|s\d{1,2}))\.(png|jpg)$")


class UploadError(ValueError):
    """An upload that is not a usable image; str() is one line, `status` the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """Upload bytes -> (H, W, 3) uint8 RGB, or UploadError (400 bad, 413 too large, 415 type)."""
    if not data:
        raise UploadError("empty upload (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in ALLOWED_FORMATS:
                raise UploadError(f"unsupported image type {im.format}; use "
                                  f"{', '.join(ALLOWED_FORMATS)}", 415)
            w, h = im.size
            if w * h > max_pixels:
                raise UploadError(f"image is {w}x{h} = {w * h / 1e6:.1f} MP; the limit is "
                                  f"{max_pixels / 1e6:.1f} MP", 413)
            im = ImageOps.exif_transpose(im)
            rgb = im.convert("RGB")
    except UploadError:
        raise
    except Image.DecompressionBombError:
        raise UploadError("image is too large to decode safely", 413) from None
    except (OSError, ValueError, SyntaxError, Image.UnidentifiedImageError):
        raise UploadError("not a readable image (upload a JPEG, PNG or WebP photo)", 415) from None
    if min(rgb.size) < 8:
        raise UploadError(f"image is {rgb.size[0]}x{rgb.size[1]}; need at least 8x8 pixels")
    return np.asarray(rgb, dtype=np.uint8)


def encode_image(img: np.ndarray, fmt: str = "png") -> bytes:
    """(H, W, 3) uint8 -> PNG (lossless) or JPEG (quality 95) bytes."""
    buf = io.BytesIO()
    if fmt == "jpg":
        Image.fromarray(img).save(buf, format="JPEG", quality=95)
    else:
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class ResultStore:
    """Result folders under a private temp dir, named by random ids, capped in number and age."""

    def __init__(self, max_results: int = 100, ttl_s: float = 3600.0,
                 root: str | Path | None = None) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="facemend-serve-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_results, self.ttl_s = max_results, ttl_s
        self._created: dict[str, float] = {}  # id -> monotonic time, insertion-ordered
        self._lock = threading.Lock()

    def new(self) -> str:
        """A fresh result id with an empty folder."""
        rid = secrets.token_hex(16)
        (self.root / rid).mkdir()
        with self._lock:
            self._created[rid] = time.monotonic()
        self.evict()
        return rid

    def put(self, rid: str, name: str, data: bytes) -> None:
        """Write one result file (name from the server, checked anyway)."""
        (self._dir(rid) / self._check_name(name)).write_bytes(data)

    def path(self, rid: str, name: str) -> Path | None:
        """The file of a stored result, or None (bad id or name, expired, missing)."""
        if not ID_RE.match(rid) or not FILE_RE.match(name):
            return None
        self.evict()
        with self._lock:
            if rid not in self._created:
                return None
        p = self.root / rid / name
        return p if p.is_file() else None

    def evict(self) -> None:
        """Remove results older than ttl_s, then the oldest beyond max_results."""
        now = time.monotonic()
        with self._lock:
            ids = list(self._created)
            old = [r for r in ids if now - self._created[r] > self.ttl_s]
            keep = [r for r in ids if r not in old]
            old += keep[: max(0, len(keep) - self.max_results)]
            for r in old:
                del self._created[r]
        for r in old:
            shutil.rmtree(self.root / r, ignore_errors=True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._created)

    def close(self) -> None:
        """Delete every stored result and the temp folder."""
        with self._lock:
            self._created.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def _dir(self, rid: str) -> Path:
        assert ID_RE.match(rid), rid
        return self.root / rid

    @staticmethod
    def _check_name(name: str) -> str:
        assert FILE_RE.match(name), name
        return name
