"""Uploads in, result files out: the shared image loader with limits, and a temp store.

Uploads are decoded from memory by `facemend.io.decode_image`, the loader `facemend restore`
uses (16-bit, float, CMYK, alpha, EXIF orientation handled the same way), never written under a
client-chosen name: the format must be one of `ALLOWED_FORMATS`, the pixel count at most
`max_pixels` (checked from the header, before decoding). The input is kept compactly: its own
bytes when a browser can show them as they are, else a JPEG. Results live in `root/ID/FILE`
where ID is 32 hex chars from `secrets` and FILE matches `FILE_RE`; both are checked against
these patterns before any path is built, so a request cannot name another file. The store keeps
at most `max_results` results and `max_bytes` bytes, each result for at most `ttl_s` seconds
(oldest removed first, on every put and lookup).
"""

from __future__ import annotations

import io
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facemend.io import ImageError, decode_image

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
KEPT_AS_UPLOADED = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}  # browsers show
LOSSLESS_MAX_PIXELS = 4_000_000  # whole restored photos above this are stored as JPEG q95
ID_RE = re.compile(r"[0-9a-f]{32}")
FILE_RE = re.compile(r"(input|image_s\d{1,2}|face_\d{1,3}_(input|s\d{1,2}))\.(png|jpg|webp|gif)")
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
_STATUS = {"empty": 400, "too_large": 413}  # other ImageError kinds: 415


class UploadError(ValueError):
    """An upload that is not a usable image; str() is one line, `status` the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """A decoded upload: its pixels and the compact file kept as the result's input image."""

    rgb: np.ndarray  # (H, W, 3) uint8
    stored: bytes
    stored_name: str  # input.jpg / input.png / input.webp / input.gif


def decode_upload(data: bytes, max_pixels: int) -> Upload:
    """Upload bytes -> Upload, or UploadError (400 bad, 413 too large, 415 type)."""
    try:
        img = decode_image(data, "upload", max_pixels, ALLOWED_FORMATS)
    except ImageError as e:
        problem = str(e).split(": ", 1)[-1]
        if e.kind == "empty":
            raise UploadError("empty upload (0 bytes)") from None
        if e.kind == "too_large":
            raise UploadError(f"{problem.split(' is over')[0]} is over the limit of "
                              f"{max_pixels / 1e6:.1f} MP", 413) from None
        raise UploadError(f"not a readable image ({problem})", _STATUS.get(e.kind, 415)
                          ) from None
    h, w = img.rgb.shape[:2]
    if min(h, w) < 8:
        raise UploadError(f"image is {w}x{h}; need at least 8x8 pixels")
    ext = KEPT_AS_UPLOADED.get(img.format or "")
    animated = any("animated" in n for n in img.warnings)
    if ext and not img.orientation_applied and img.alpha is None and not animated:
        return Upload(img.rgb, data, f"input.{ext}")
    return Upload(img.rgb, encode_image(img.rgb, "jpg"), "input.jpg")


def encode_image(img: np.ndarray, fmt: str = "png") -> bytes:
    """(H, W, 3) uint8 -> PNG (lossless) or JPEG (quality 95) bytes."""
    buf = io.BytesIO()
    if fmt == "jpg":
        Image.fromarray(img).save(buf, format="JPEG", quality=95)
    else:
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def photo_format(img: np.ndarray) -> str:
    """'png' for a whole photo up to LOSSLESS_MAX_PIXELS, else 'jpg' (bounded store size)."""
    return "png" if img.shape[0] * img.shape[1] <= LOSSLESS_MAX_PIXELS else "jpg"


class ResultStore:
    """Result folders under a private temp dir, named by random ids, capped in number, bytes and
    age."""

    def __init__(self, max_results: int = 100, ttl_s: float = 3600.0,
                 root: str | Path | None = None, max_bytes: int = 1 << 30) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="facemend-serve-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_results, self.ttl_s, self.max_bytes = max_results, ttl_s, max_bytes
        self._created: dict[str, float] = {}  # id -> monotonic time, insertion-ordered
        self._bytes: dict[str, int] = {}  # id -> bytes written
        self._lock = threading.Lock()

    def new(self) -> str:
        """A fresh result id with an empty folder."""
        rid = secrets.token_hex(16)
        (self.root / rid).mkdir()
        with self._lock:
            self._created[rid] = time.monotonic()
            self._bytes[rid] = 0
        self.evict()
        return rid

    def put(self, rid: str, name: str, data: bytes) -> None:
        """Write one result file (name from the server, checked anyway); older results are
        dropped while the store holds more than max_bytes (the newest one is kept)."""
        with self._lock:
            if rid not in self._created:
                return  # evicted meanwhile: nothing to add to
            self._bytes[rid] += len(data)
        (self._dir(rid) / self._check_name(name)).write_bytes(data)
        self.evict(keep=rid)

    def path(self, rid: str, name: str) -> Path | None:
        """The file of a stored result, or None (bad id or name, expired, missing)."""
        if not ID_RE.fullmatch(rid) or not FILE_RE.fullmatch(name):
            return None
        self.evict()
        with self._lock:
            if rid not in self._created:
                return None
        p = self.root / rid / name
        return p if p.is_file() else None

    def evict(self, keep: str | None = None) -> None:
        """Remove results older than ttl_s, then the oldest beyond max_results or max_bytes
        (never `keep` nor the newest result)."""
        now = time.monotonic()
        with self._lock:
            ids = list(self._created)
            old = [r for r in ids if now - self._created[r] > self.ttl_s and r != keep]
            live = [r for r in ids if r not in old]
            total = sum(self._bytes[r] for r in live)
            drop: list[str] = []
            for r in live:  # oldest first
                if len(live) - len(drop) <= self.max_results and total <= self.max_bytes:
                    break
                if r == keep or r == live[-1]:
                    continue
                drop.append(r)
                total -= self._bytes[r]
            for r in old + drop:
                del self._created[r]
                del self._bytes[r]
        for r in old + drop:
            shutil.rmtree(self.root / r, ignore_errors=True)

    def total_bytes(self) -> int:
        """Bytes of every stored result file."""
        with self._lock:
            return sum(self._bytes.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._created)

    def close(self) -> None:
        """Delete every stored result and the temp folder."""
        with self._lock:
            self._created.clear()
            self._bytes.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def _dir(self, rid: str) -> Path:
        assert ID_RE.fullmatch(rid), rid
        return self.root / rid

    @staticmethod
    def _check_name(name: str) -> str:
        assert FILE_RE.fullmatch(name), name
        return name
