"""Image and file I/O in one place: read any photo safely, write outputs atomically.

Every user-caused problem becomes an `ImageError` whose message is one line naming the file.
Tensors are (B, 3, H, W) float in [-1, 1]; arrays are (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class ImageError(ValueError):
    """A file that cannot be used as an image; str() is '<path>: <problem>'."""


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, EXIF orientation applied."""
    p = Path(path)
    try:
        if p.stat().st_size == 0:
            raise ImageError(f"{p}: empty file (0 bytes)")
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB") if im.mode != "RGB" else im.copy()
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{p}: file not found") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{p}: image too large ({e})") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{p}: not a readable image ({e})") from None
    return np.asarray(im, dtype=np.uint8)


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under a folder, sorted by path (deterministic)."""
    root = Path(folder)
    it: Iterable[Path] = root.rglob("*") if recursive else root.glob("*")
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1]."""
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, img.shape
    arr = np.ascontiguousarray(img)
    arr = arr if arr.flags.writeable else arr.copy()
    t = torch.from_numpy(arr).permute(2, 0, 1).float()
    return (t / 127.5 - 1.0).unsqueeze(0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) float in [-1, 1] -> (H, W, 3) uint8 (rounded, clamped)."""
    if x.ndim == 4:
        assert x.shape[0] == 1, x.shape
        x = x[0]
    assert x.ndim == 3 and x.shape[0] == 3, x.shape
    y = ((x.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return y.permute(1, 2, 0).numpy()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to `path` via a temp file in the same folder + rename (never half-written)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_rgb(path: str | Path, img: np.ndarray, quality: int = 95) -> None:
    """Save (H, W, 3) uint8 RGB atomically; format from the suffix (png/jpg/webp)."""
    import io as _io

    p = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(p.suffix.lower(), "PNG")
    buf = _io.BytesIO()
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(img).save(buf, format=fmt, **kwargs)
    atomic_write_bytes(p, buf.getvalue())
