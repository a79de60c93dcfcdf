"""Image and file I/O in one place: read any photo safely, write outputs atomically.

Every user-caused problem becomes an `ImageError` whose message is one line naming the file.
Tensors are (B, 3, H, W) float in [-1, 1]; arrays are (H, W, 3) uint8 RGB.

What `load_image` does with each kind of input (tests/test_bad_inputs.py covers every line):
- format is found from the content, not the extension (a PNG named .jpg loads);
- empty, truncated or corrupt files and non-images are rejected: Pillow's
  LOAD_TRUNCATED_IMAGES is set back to False on every load (a library may flip it), so a cut-off
  JPEG is never returned half-grey;
- L/LA/P/1/I;16/I/F/CMYK/YCbCr/RGBA all become 8-bit RGB. 16-bit data is scaled (x 255/65535,
  rounded), never clipped. Float (F) data in [0, 1] is scaled by 255, other float data is taken
  as 0-255; both are clipped to 0-255, NaN -> 0 (with a warning). CMYK goes through its embedded
  ICC profile when it has one (else Pillow's naive conversion);
- transparency (RGBA, LA, P with a transparent index) is composited over white in `rgb` and kept
  as `alpha`; `save_image(..., alpha=...)` undoes the white composite and re-attaches it;
- the EXIF orientation is applied to the pixels (outputs carry no orientation tag);
- an RGB ICC profile is kept in `icc_profile` (for outputs); profiles of other colour spaces are
  dropped once the pixels are RGB;
- animated GIF/WebP/PNG: the first frame, with a warning;
- HEIC/HEIF: through the optional `pillow-heif` package; without it a clear error naming it;
- decompression bombs: the header's width x height is checked against `max_pixels` (default
  100 MP) before any pixel is decoded; Pillow's own global limit is not used.
"""

from __future__ import annotations

import io as _io
import os
import re
import struct
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageCms, ImageFile, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif",
                    ".heic", ".heif", ".avif")
DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP; `facemend restore --max-pixels`
MAX_PIXELS_HINT = "; raise it with --max-pixels N if the file is trusted"  # restore's option
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
MAGIC = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
         (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"RIFF", "RIFF/WebP"))
_PIL_LOCK = threading.Lock()  # Image.MAX_IMAGE_PIXELS is global: swap it under a lock
_heif_registered = False
_UMASK = os.umask(0o022)  # read the process umask once (at import) and put it back
os.umask(_UMASK)


class ImageError(ValueError):
    """A file that cannot be used as an image; str() is '<path>: <problem>'.

    `kind` says which problem, for callers that map it to a status: "missing", "empty",
    "too_large" (pixel limit), "unsupported" (a format the caller refuses), "not_image",
    "truncated" or "corrupt".
    """

    def __init__(self, message: str, kind: str = "corrupt") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class LoadedImage:
    """A decoded photo: RGB pixels plus what outputs should keep (alpha, ICC) and notes."""

    rgb: np.ndarray  # (H, W, 3) uint8, composited over white where the input had alpha
    alpha: np.ndarray | None  # (H, W) uint8, or None when the input had no transparency
    icc_profile: bytes | None  # an RGB ICC profile to write back, or None (sRGB assumed)
    mode: str  # Pillow mode of the file ("RGB", "I;16", "CMYK", ...)
    format: str | None  # Pillow format name ("JPEG", "PNG", ...)
    orientation_applied: bool  # an EXIF orientation other than 1 was applied to the pixels
    warnings: tuple[str, ...]  # one-line notes ("animated GIF, 12 frames: first frame used")


def load_rgb(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, EXIF orientation applied (see load_image)."""
    return load_image(path, max_pixels).rgb


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file safely (rules in the module docstring); ImageError on any problem."""
    p = Path(path)
    try:
        if p.is_dir():
            raise ImageError(f"{p}: is a folder, not an image file", "not_image")
        if p.stat().st_size == 0:
            raise ImageError(f"{p}: empty file (0 bytes)", "empty")
        with open(p, "rb") as f:
            head = f.read(512)
    except FileNotFoundError:
        raise ImageError(f"{p}: file not found", "missing") from None
    except PermissionError:
        raise ImageError(f"{p}: permission denied", "missing") from None
    except OSError as e:
        raise ImageError(f"{p}: cannot be read ({e.strerror or type(e).__name__})",
                         "missing") from None
    return _load(str(p), p, head, max_pixels, None)


def decode_image(data: bytes, name: str = "upload",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 formats: tuple[str, ...] | None = None) -> LoadedImage:
    """`load_image` for bytes in memory (an upload); `name` labels the messages. With `formats`
    (Pillow names, e.g. ("JPEG", "PNG")) any other format is refused before decoding."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)", "empty")
    return _load(name, _io.BytesIO(data), data[:512], max_pixels, formats)


def _load(label: str, source: Any, head: bytes, max_pixels: int | None,
          formats: tuple[str, ...] | None) -> LoadedImage:
    """Open (header only), check size and format, decode; every failure is one ImageError."""
    try:
        _check_heif(label, head)
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a library may have flipped it: never pad
        with _PIL_LOCK:
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im = Image.open(source)  # header only
            finally:
                Image.MAX_IMAGE_PIXELS = old
        with im:
            if formats is not None and im.format not in formats:
                raise ImageError(f"{label}: {im.format} images are not accepted here (use "
                                 f"{', '.join(formats)})", "unsupported")
            _check_size(label, im.size, max_pixels)
            return _decode(im)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{label}: file not found", "missing") from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied", "missing") from None
    except Image.UnidentifiedImageError:
        fmt = next((name for magic, name in MAGIC if head.startswith(magic)), None)
        if fmt is not None:
            raise ImageError(f"{label}: corrupt or unsupported image data (starts like a {fmt} "
                             "file, but its header cannot be parsed)") from None
        what = sniff_bytes(head)
        hint = f"; it looks like {what}" if what else ""
        raise ImageError(f"{label}: not an image file (content not recognised{hint})",
                         "not_image") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "truncated" in msg or isinstance(e, EOFError):
            raise ImageError(f"{label}: truncated image file ({msg}); re-export or re-download "
                             "it", "truncated") from None
        raise ImageError(f"{label}: corrupt or unsupported image data ({msg})") from None


def sniff_format(path: str | Path) -> str:
    """What a file looks like from its first bytes ('a Python pickle', 'a text file'), or ''."""
    try:
        with open(path, "rb") as f:
            return sniff_bytes(f.read(512))
    except OSError:
        return ""


def sniff_bytes(head: bytes) -> str:
    """What data looks like from its first bytes (see sniff_format), or ''."""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save format)"
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return ""


def _check_heif(p: str, head: bytes) -> None:
    """Register pillow-heif for HEIC/HEIF files, or say which package is missing."""
    global _heif_registered
    if head[4:8] != b"ftyp" or head[8:12] not in HEIF_BRANDS or _heif_registered:
        return
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        raise ImageError(f"{p}: HEIC/HEIF image needs the optional decoder: "
                         "pip install pillow-heif (or convert it to JPEG/PNG)",
                         "unsupported") from None
    register_heif_opener()
    _heif_registered = True


def _check_size(p: str, size: tuple[int, int], max_pixels: int | None) -> None:
    """Decompression-bomb guard on the header's size, before decoding."""
    w, h = size
    if w < 1 or h < 1:
        raise ImageError(f"{p}: image has no pixels ({w} x {h})", "corrupt")
    if max_pixels is not None and max_pixels > 0 and w * h > max_pixels:
        raise ImageError(f"{p}: {w} x {h} = {w * h / 1e6:.1f} MP is over the limit of "
                         f"{max_pixels / 1e6:g} MP (decompression-bomb guard){MAX_PIXELS_HINT}",
                         "too_large")


def _decode(im: Image.Image) -> LoadedImage:
    """Decode the first frame of an opened image into a LoadedImage."""
    notes: list[str] = []
    mode, fmt = im.mode, im.format
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"animated {fmt} with {frames} frames: only the first frame is used")
    im.load()  # decode now: a truncated file raises here
    icc = im.info.get("icc_profile") or None
    orientation = 1
    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        rotated = ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001 - a broken EXIF block must not lose the photo
        notes.append(f"unreadable EXIF ({type(e).__name__}): orientation not applied")
        rotated, orientation = im, 1
    rgb, alpha, icc_ok = _to_rgb(rotated, icc, notes)
    return LoadedImage(rgb=rgb, alpha=alpha, icc_profile=icc if icc_ok else None, mode=mode,
                       format=fmt, orientation_applied=orientation not in (0, 1),
                       warnings=tuple(notes))


def _to_rgb(im: Image.Image, icc: bytes | None, notes: list[str]
            ) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(rgb uint8, alpha uint8 or None, whether `icc` still describes rgb) for any mode."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im, dtype=np.float64)
        if mode == "I" and arr.max(initial=0) > 65535:
            notes.append("32-bit integer image: values above 65535 clipped")
        g = np.clip(np.round(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2), None, False
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if not np.isfinite(arr).all():
            notes.append("float image with NaN/inf values: set to 0")
            arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if arr.size and arr.min() >= 0 and arr.max() <= 1.0 else 1.0
        g = np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2), None, False
    icc_space = icc[16:20] if icc and len(icc) >= 20 else b""
    if mode == "CMYK":
        if icc_space == b"CMYK":
            try:
                src = ImageCms.ImageCmsProfile(_io.BytesIO(icc))
                srgb = ImageCms.createProfile("sRGB")
                return np.asarray(ImageCms.profileToProfile(im, src, srgb, outputMode="RGB"),
                                  dtype=np.uint8), None, False
            except (ImageCms.PyCMSError, OSError) as e:
                notes.append(f"CMYK ICC profile unusable ({e}): naive conversion")
        return np.asarray(im.convert("RGB"), dtype=np.uint8), None, False
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        alpha = rgba[..., 3].copy()
        if alpha.min() == 255:  # an alpha channel that hides nothing
            return np.ascontiguousarray(rgba[..., :3]), None, icc_space == b"RGB "
        a = alpha[..., None].astype(np.float32) / 255.0
        rgb = np.round(rgba[..., :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)
        return rgb, alpha, icc_space == b"RGB "
    out = im if mode == "RGB" else im.convert("RGB")
    return np.array(out, dtype=np.uint8), None, icc_space == b"RGB "


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
        try:  # mkstemp makes 0600 files: give the usual mode (the old file's, else umask's)
            mode = p.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> None:
    """Render a matplotlib figure as PNG (`savefig` keywords passed on) and write it atomically."""
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", **savefig)
    atomic_write_bytes(path, buf.getvalue())


def remove_stale_temps(path: str | Path) -> int:
    """Delete temp files that a killed `atomic_write_bytes(path)` left; returns how many."""
    p = Path(path)
    if not p.parent.is_dir():
        return 0
    pattern = re.compile(r"^\." + re.escape(p.name) + r"\.[^/]+\.tmp$")
    stale = [q for q in p.parent.iterdir() if pattern.match(q.name)]
    for q in stale:
        q.unlink(missing_ok=True)
    return len(stale)


def attach_alpha(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 4) RGBA from rgb composited over white (as LoadedImage.rgb) and an alpha mask.

    The alpha is resized (bilinear) to rgb's size when they differ (e.g. after --upscale); the
    white composite is undone, so unchanged pixels get their original colour back.
    """
    h, w = rgb.shape[:2]
    if alpha.shape != (h, w):
        alpha = np.asarray(Image.fromarray(alpha).resize((w, h), Image.Resampling.BILINEAR))
    a = alpha[..., None].astype(np.float32) / 255.0
    colour = (rgb.astype(np.float32) - 255.0 * (1.0 - a)) / np.maximum(a, 1.0 / 255.0)
    colour = np.where(a > 0, colour, rgb.astype(np.float32))
    rgba = np.concatenate([np.clip(np.round(colour), 0, 255), alpha[..., None]], axis=2)
    return rgba.astype(np.uint8)


def save_image(path: str | Path, img: np.ndarray, quality: int = 95, *,
               icc_profile: bytes | None = None, alpha: np.ndarray | None = None) -> None:
    """Save (H, W, 3) uint8 RGB atomically with an optional ICC profile and alpha (see
    attach_alpha); format from the suffix (png/jpg/webp). JPEG drops alpha; no EXIF is written."""
    p = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(p.suffix.lower(), "PNG")
    pil = Image.fromarray(img)
    if alpha is not None and fmt != "JPEG":
        pil = Image.fromarray(attach_alpha(img, alpha), "RGBA")
    kwargs: dict = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    buf = _io.BytesIO()
    pil.save(buf, format=fmt, **kwargs)
    atomic_write_bytes(p, buf.getvalue())


def save_rgb(path: str | Path, img: np.ndarray, quality: int = 95) -> None:
    """Save (H, W, 3) uint8 RGB atomically; format from the suffix (png/jpg/webp)."""
    save_image(path, img, quality)


def find_weight_file(places: Iterable[Path], names: tuple[str, ...]) -> Path | None:
    """The first of `places` (in order) that is a file or holds a file named in `names`."""
    for place in places:
        for p in (place, *(place / n for n in names)):
            if p.is_file():
                return p
    return None


def load_torch_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A torch.save state dict read with weights_only=True (tensors and plain containers only:
    a pickle that would run code is refused); any bad file is a one-line ValueError."""
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        what = sniff_format(p)
        raise ValueError(f"{p}: not a plain torch state dict ({type(e).__name__}: {first[:200]}"
                         f"{'; it looks like ' + what if what else ''}); only tensors are loaded,"
                         " never pickled code") from None
    if not isinstance(state, dict):
        raise ValueError(f"{p}: holds a {type(state).__name__}, not a state dict")
    return state
