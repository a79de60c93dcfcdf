"""Bad and unusual inputs: a corpus made on the fly, at the io level and through `restore`."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

import facemend.io as fio
from facemend.cli import main
from facemend.io import ImageError, LoadedImage, atomic_write_bytes, load_image, save_image

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "photos" / "john2.jpg"  # one face, 630 x 374
HAVE_HEIF = importlib.util.find_spec("pillow_heif") is not None
UNICODE_NAME = "name with spaces é ü 名.png"

# file name -> (expected "ok" or "reject", substring of the one-line message)
REJECTED = {
    "empty.jpg": "empty file (0 bytes)",
    "truncated.jpg": "truncated image file",
    "truncated.png": "truncated image file",
    "text.jpg": "looks like a text file",
    "random.png": "not an image file",
    "pickle.png": "looks like a Python pickle",
    "bad_crc.png": "corrupt or unsupported image data",
    "bomb.png": "over the limit of 100 MP (decompression-bomb guard); raise it with --max-pixels",
}
HANDLED = ["png_named.jpg", "gray.png", "la.png", "p_transparent.png", "rgba.png", "cmyk.jpg",
           "gray16.png", "rgb16.png", "float.tif", "exif_rotated.jpg", "animated.gif",
           "animated.webp", "tiny_1x1.png", "srgb_icc.png", "bilevel.png", "plain.webp",
           "plain.bmp", "plain.tif", UNICODE_NAME]
if HAVE_HEIF:
    HANDLED.append("photo.heic")
else:
    REJECTED["photo.heic"] = "pip install pillow-heif"


def png_bytes(w: int, h: int, color_type: int, bit_depth: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand (any bit depth; header-only sizes for the bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def rows16(a: np.ndarray) -> bytes:
    """PNG scanlines (filter 0) of a uint16 array, big-endian."""
    return b"".join(b"\x00" + r.astype(">u2").tobytes() for r in a)


class Evil:
    """Unpickling this calls open(marker, 'w'): the file appearing means code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def build_corpus(d: Path) -> np.ndarray:
    """Write every case of REJECTED and HANDLED into `d`; returns the base RGB test pattern."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = (rng.random((40, 60, 3)) * 255).astype(np.uint8)  # (H, W, 3)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    png, jpg = buf.getvalue(), PHOTO.read_bytes()
    (d / "empty.jpg").write_bytes(b"")
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "text.jpg").write_text("this is not an image\n")
    (d / "random.png").write_bytes(rng.bytes(2000))
    (d / "pickle.png").write_bytes(pickle.dumps(Evil(d / "MARKER"), protocol=4))
    (d / "bad_crc.png").write_bytes(png[:29] + b"\x00\x00\x00\x00" + png[33:])
    (d / "bomb.png").write_bytes(png_bytes(20000, 20000, 2, 8, b"\x00" * 10))
    (d / "png_named.jpg").write_bytes(png)
    Image.fromarray(rgb[..., 0]).save(d / "gray.png")
    Image.merge("LA", [Image.fromarray(rgb[..., 0]), Image.fromarray(rgb[..., 1])]).save(
        d / "la.png")
    Image.fromarray(rgb).quantize(16).save(d / "p_transparent.png", transparency=0)
    Image.fromarray(np.dstack([rgb, np.full((40, 60), 128, np.uint8)])).save(d / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg", quality=98)
    (d / "gray16.png").write_bytes(png_bytes(60, 40, 0, 16, rows16(
        np.linspace(0, 65535, 2400).round().astype(np.uint16).reshape(40, 60))))
    (d / "rgb16.png").write_bytes(png_bytes(60, 40, 2, 16, rows16(
        rgb.astype(np.uint16).reshape(40, 180) * 257)))
    Image.fromarray((rgb[..., 0] / 255.0).astype(np.float32), "F").save(d / "float.tif")
    im = Image.open(PHOTO)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(d / "exif_rotated.jpg", exif=exif)
    frames = [Image.fromarray(np.roll(rgb, k, axis=1)) for k in range(3)]
    for ext in ("gif", "webp"):
        frames[0].save(d / f"animated.{ext}", save_all=True, append_images=frames[1:],
                       **({"lossless": True} if ext == "webp" else {}))
    Image.new("RGB", (1, 1), (10, 20, 30)).save(d / "tiny_1x1.png")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(d / "srgb_icc.png", icc_profile=srgb)
    Image.fromarray(rgb[..., 0] > 128).save(d / "bilevel.png")
    for ext in ("webp", "bmp", "tif"):
        Image.fromarray(rgb).save(d / f"plain.{ext}", **({"lossless": True} if ext == "webp"
                                                         else {}))
    Image.fromarray(rgb).save(d / UNICODE_NAME)
    if HAVE_HEIF:
        import pillow_heif

        pillow_heif.from_pillow(Image.fromarray(rgb)).save(d / "photo.heic", quality=-1)
    else:  # the start of a real HEIC file: enough to be recognised
        (d / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" * 4)
    return rgb


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    d = tmp_path_factory.mktemp("corpus")
    return d, build_corpus(d)


def test_corpus_is_complete(corpus: tuple[Path, np.ndarray]) -> None:
    d, _ = corpus
    assert {p.name for p in d.iterdir()} == set(REJECTED) | set(HANDLED)


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_with_one_clear_line(corpus: tuple[Path, np.ndarray], name: str) -> None:
    d, _ = corpus
    with pytest.raises(ImageError) as e:
        load_image(d / name)
    msg = str(e.value)
    assert msg.startswith(f"{d / name}: ") and REJECTED[name] in msg and "\n" not in msg
    assert not (d / "MARKER").exists()


@pytest.mark.parametrize("name", HANDLED)
def test_handled(corpus: tuple[Path, np.ndarray], name: str) -> None:
    d, rgb = corpus
    li = load_image(d / name)
    assert isinstance(li, LoadedImage) and li.rgb.dtype == np.uint8 and li.rgb.shape[2] == 3
    assert (li.alpha is not None) == (name in ("la.png", "p_transparent.png", "rgba.png"))
    assert bool(li.warnings) == name.startswith("animated"), li.warnings
    assert li.orientation_applied == (name == "exif_rotated.jpg")
    exact = ("png_named.jpg", "rgb16.png", "srgb_icc.png", "plain.webp", "plain.bmp",
             "plain.tif", "animated.webp", UNICODE_NAME)
    if name in exact:
        assert np.array_equal(li.rgb, rgb)
    if name in ("gray.png", "float.tif"):
        assert np.abs(li.rgb[..., 1].astype(int) - rgb[..., 0]).max() <= 1
    if name in ("cmyk.jpg", "photo.heic", "animated.gif"):  # lossy: same mean colour
        assert np.abs(li.rgb.mean((0, 1)) - rgb.mean((0, 1))).max() < 8
    assert (li.icc_profile is not None) == (name == "srgb_icc.png")


def test_pixel_conversions(corpus: tuple[Path, np.ndarray]) -> None:
    d, rgb = corpus
    g16 = load_image(d / "gray16.png")
    assert g16.mode.startswith("I;16") and g16.rgb[0, 0, 0] == 0 and g16.rgb[-1, -1, 0] == 255
    assert 120 <= int(g16.rgb[20, 0, 0]) <= 135  # mid-grey, scaled (not clipped to 255)
    rgba = load_image(d / "rgba.png")
    assert (rgba.alpha == 128).all()
    white = np.round(rgb * (128 / 255) + 255 * (127 / 255))
    assert np.abs(rgba.rgb - white).max() <= 1  # composited over white
    rot = load_image(d / "exif_rotated.jpg")
    w, h = Image.open(PHOTO).size
    assert rot.rgb.shape[:2] == (w, h)
    assert load_image(d / "tiny_1x1.png").rgb.tolist() == [[[10, 20, 30]]]


def test_limits_and_global_flags(corpus: tuple[Path, np.ndarray],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    d, _ = corpus
    with pytest.raises(ImageError, match="over the limit of 0.001 MP"):
        load_image(d / "gray.png", max_pixels=1000)
    assert load_image(d / "gray.png", max_pixels=None).rgb.shape == (40, 60, 3)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some libraries do
    with pytest.raises(ImageError, match="truncated"):
        load_image(d / "truncated.jpg")
    monkeypatch.setattr(fio, "_heif_registered", False)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if not installed
    with pytest.raises(ImageError, match="pip install pillow-heif"):
        load_image(d / "photo.heic")


def test_save_image_keeps_alpha_icc_and_writes_atomically(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = np.full((8, 8, 3), 200, np.uint8)
    alpha = np.zeros((4, 4), np.uint8)
    alpha[:2] = 255
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    save_image(tmp_path / "a.png", rgb, icc_profile=icc, alpha=alpha)  # alpha resized to 8x8
    im = Image.open(tmp_path / "a.png")
    assert im.mode == "RGBA" and im.info.get("icc_profile") == icc
    assert np.asarray(im)[0, 0, 3] == 255 and np.asarray(im)[7, 7, 3] == 0
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o666 & ~fio._UMASK
    (tmp_path / "b.png").write_bytes(b"old")

    def boom(*_a: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "b.png", b"new")
    with pytest.raises(KeyboardInterrupt):
        save_image(tmp_path / "c.png", rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]
    assert (tmp_path / "b.png").read_bytes() == b"old"


def restore(*args: str) -> int:
    return main(["restore", *args, "--no-progress", "--threads", "1", "--no-identity"])


def test_restore_on_the_whole_corpus(corpus: tuple[Path, np.ndarray], weights: Path,
                                     tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    shutil.copytree(corpus[0], src)
    shutil.copy(PHOTO, src / "john2.jpg")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = tmp_path / "out"
    assert restore(str(src), "-o", str(out), "--weights", str(weights)) == 1
    captured = capsys.readouterr()
    text, err = captured.out, captured.err
    errors = [ln for ln in err.splitlines() if ln.startswith(str(src))]
    assert len(errors) == len(REJECTED)
    for name, msg in REJECTED.items():
        assert sum(ln.startswith(f"{src / name}: ") and msg in ln for ln in errors) == 1, name
    assert f"{len(HANDLED) + 1} restored (1 faces), {len(REJECTED)} failed" in text
    assert "note: " in err and "only the first frame" in err
    report = {Path(f["file"]).name: f for f in json.loads((out / "report.json").read_text())
              ["files"]}
    assert set(report) == set(before)
    assert all(report[n]["status"] == "error" for n in REJECTED)
    assert all(report[n]["status"] == "ok" for n in [*HANDLED, "john2.jpg"])
    assert len(report["john2.jpg"]["faces"]) == 1 and "no face" in report["tiny_1x1.png"]["note"]
    imgs = {p.name for p in (out / "restored_imgs").iterdir()}
    assert len(imgs) == len(HANDLED) + 1 and "png_named.jpg" in imgs and UNICODE_NAME in imgs
    assert {"animated_gif.png", "animated_webp.png"} <= imgs  # same stem: no collision
    rgba = Image.open(out / "restored_imgs" / "rgba.png")
    assert rgba.mode == "RGBA" and (np.asarray(rgba)[..., 3] == 128).all()
    assert "icc_profile" in Image.open(out / "restored_imgs" / "srgb_icc.png").info
    rot = Image.open(out / "restored_imgs" / "exif_rotated.jpg")
    assert rot.size == Image.open(PHOTO).size[::-1] and 0x0112 not in rot.getexif()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    assert not (src / "MARKER").exists()


def test_outputs_never_overwrite_inputs(weights: Path, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    (src / "restored_imgs").mkdir(parents=True)
    crop = Image.open(PHOTO).convert("RGB").resize((63, 37))
    for name in ("x.png", "x.jpg", "restored_imgs/x_png.png", "restored_imgs/y.png"):
        crop.save(src / name)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    assert restore(str(src), str(src / "restored_imgs" / "y.png"), str(src / "restored_imgs"),
                   "-o", str(src), "--weights", str(weights)) == 0
    assert {p: p.read_bytes() for p in before} == before  # every input untouched
    names = sorted(p.name for p in (src / "restored_imgs").iterdir())
    assert names == ["x_jpg.jpg", "x_png.png", "x_png_restored.png",
                     "x_png_restored_restored.png", "y.png", "y_restored.png"], names
    # a second run on the same folder with -o = the folder does not restore its own results
    assert restore(str(src), "--recursive", "-o", str(src), "--weights", str(weights)) == 0
    report = json.loads((src / "report.json").read_text())
    assert sorted(Path(f["file"]).name for f in report["files"]) == ["x.jpg", "x.png"]
    assert not [p for p in src.rglob("*") if p.name.endswith(".tmp")]
