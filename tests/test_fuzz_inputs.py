"""A corpus of hostile inputs, crafted at test time, through `facemend restore` (a subprocess),
`facemend serve` (its HTTP interface) and config loading.

For restore: no traceback, exactly one stderr line per bad input naming it, exit 1 when any
input failed and 0 when none did, every good input restored, nothing outside the output folder
touched, bytes written and peak memory bounded.
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facemend.config import ConfigError, RunConfig, load_config

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "photos" / "john2.jpg"  # one face
MAX_WRITTEN = 64 << 20  # bytes the restore run may write for this corpus
MAX_RSS_KB = 2_500_000  # peak resident memory of the restore process (KiB)


def one_line(name: str) -> str:
    """How a message spells a file name: newlines escaped as repr does (the corpus has no other
    control character)."""
    return name.replace("\n", "\\n")


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height RGB, with one tiny (wrong-sized) IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def bad_inputs(small: Image.Image) -> dict[str, bytes]:
    """{file name: bytes} that no loader may accept."""
    jpeg, png = _encode(small, "JPEG", quality=90), _encode(small, "PNG")
    rng = np.random.default_rng(0)
    garbled = bytearray(png)
    garbled[60:] = rng.integers(0, 256, len(png) - 60, dtype=np.uint8).tobytes()
    return {
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[: len(png) // 2],
        "garbled.png": bytes(garbled),
        "garbled.jpg": jpeg[:20] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "zero bytes.jpg": b"",
        "text.png": b"this is a text file with an image extension\n",
        "huge.png": huge_png(100_000, 100_000),
        "new\nline.jpg": jpeg[:100],
    }


def good_inputs(small: Image.Image) -> dict[str, bytes]:
    """{file name: bytes} of odd but valid images (16-bit, float, CMYK, palette, alpha)."""
    grey = np.asarray(small.convert("L"), np.float32)
    rgba = small.convert("RGBA")
    rgba.putalpha(128)
    return {
        "face.jpg": PHOTO.read_bytes(),
        "sixteen bit.png": _encode(Image.fromarray((grey * 257).astype(np.uint16)), "PNG"),
        "float.tiff": _encode(Image.fromarray(grey / 255.0, mode="F"), "TIFF"),
        "cmyk.jpg": _encode(small.convert("CMYK"), "JPEG"),
        "palette.png": _encode(small.convert("P"), "PNG"),
        "alpha.png": _encode(rgba, "PNG"),
        "ünïcødé 名前.png": _encode(small, "PNG"),
    }


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root (symlinks not followed): kind, mtime and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = (hashlib.sha256(p.read_bytes()).hexdigest()
                      if p.is_file() and not p.is_symlink() else os.readlink(p)
                      if p.is_symlink() else "dir")
            out[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns, digest)
    return out


@pytest.fixture(scope="module")
def small() -> Image.Image:
    return Image.open(PHOTO).convert("RGB").resize((96, 96))


def run_restore(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "facemend", "restore", *args, "--no-progress",
                           "--no-identity", "--threads", "1"], capture_output=True, text=True,
                          env=env, timeout=300)


def test_restore_over_the_corpus(weights: Path, small: Image.Image, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    bad, good = bad_inputs(small), good_inputs(small)
    for name, data in {**bad, **good}.items():
        (corpus / name).write_bytes(data)
    (corpus / "cycle").symlink_to(corpus, target_is_directory=True)  # a folder loop
    (corpus / "loop.jpg").symlink_to(corpus / "loop.jpg")  # a file symlink to itself
    only_sub = corpus / "only sub-folders"
    (only_sub / "a" / "b").mkdir(parents=True)
    (only_sub / "a" / "b" / "x.png").write_bytes(_encode(small, "PNG"))
    before = snapshot(corpus)
    out = tmp_path / "out"
    rss_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = run_restore(str(corpus), str(only_sub), str(corpus / "loop.jpg"), "-o", str(out),
                    "--weights", str(weights))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.returncode == 1, r.stderr
    bad_names = [str(corpus / n) for n in bad] + [str(only_sub), str(corpus / "loop.jpg")]
    lines = r.stderr.splitlines()
    for name in bad_names:
        hits = [ln for ln in lines if ln.startswith(one_line(name) + ": ")]
        assert len(hits) == 1, (name, lines)
        assert len(hits[0]) > len(one_line(name)) + 2  # the problem is said
    others = [ln for ln in lines if not any(ln.startswith(one_line(n) + ": ") for n in bad_names)]
    assert all(ln.startswith("note: ") for ln in others), others
    summary = r.stdout.splitlines()
    assert len(summary) == 1 and summary[0].startswith(
        f"{len(bad) + len(good) + 2} input(s): {len(good)} restored (")
    assert summary[0].endswith(f" faces), {len(bad) + 2} failed; results in {out}")
    restored = {p.stem for p in (out / "restored_imgs").iterdir()}
    assert restored == {Path(n).stem for n in good}
    assert (out / "restored_faces" / "face_00.png").is_file()
    assert snapshot(corpus) == before  # nothing outside the output folder touched
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert written < MAX_WRITTEN
    assert max(rss, rss_before) < MAX_RSS_KB


def test_restore_of_good_inputs_through_a_folder_loop_exits_0(
        weights: Path, small: Image.Image, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "palette.png").write_bytes(good_inputs(small)["palette.png"])
    (tree / "sub" / "up").symlink_to(tree, target_is_directory=True)
    r = run_restore(str(tree), "--recursive", "-o", str(tmp_path / "out"), "--weights",
                    str(weights))
    assert (r.returncode, r.stderr) == (0, "")
    assert [p.name for p in (tmp_path / "out" / "restored_imgs").iterdir()] == ["palette.png"]


def test_serve_answers_each_bad_upload_with_a_one_line_4xx(weights: Path,
                                                           small: Image.Image) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from facemend.web.app import ServerSettings, create_app

    app = create_app(ServerSettings(weights=str(weights), max_upload_mb=2))
    with TestClient(app, raise_server_exceptions=False) as client:
        for name, data in bad_inputs(small).items():
            r = client.post("/api/restore", files={"file": (name, data, "image/jpeg")})
            assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
            detail = r.json()["detail"]
            assert isinstance(detail, str) and detail and "\n" not in detail, (name, detail)
        for name, data in good_inputs(small).items():
            r = client.post("/api/restore", files={"file": (name, data, "image/png")},
                            data={"noise_scale": "0"})
            assert r.status_code == 200, (name, r.text)


YAML_CASES = {
    "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + "train: *i\n",
    "duplicate keys": "train:\n  batch_size: 2\n  batch_size: 4\n",
    "deep nesting": "train: " + "[" * 5000 + "]" * 5000 + "\n",
    "empty": "",
    "only a comment": "# nothing here\n",
    "not a mapping": "- 1\n- 2\n",
    "python tag": "train: !!python/object/apply:os.system ['true']\n",
    "binary": "\x00\x01\x02 garbage \xff",
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_config_loading_refuses_hostile_yaml_in_one_line(case: str, tmp_path: Path) -> None:
    p = tmp_path / "config.yaml"
    p.write_text(YAML_CASES[case], encoding="utf-8", errors="surrogateescape")
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, p)
    message = str(e.value)
    assert message and "\n" not in message and str(p) in message, message


def test_the_corpus_is_what_it_claims(small: Image.Image) -> None:
    """The good inputs decode in the modes they are meant to exercise; the huge header says
    100k x 100k."""
    modes = {n: Image.open(io.BytesIO(d)).mode for n, d in good_inputs(small).items()}
    assert modes["sixteen bit.png"].startswith("I") and modes["float.tiff"] == "F"
    assert modes["cmyk.jpg"] == "CMYK" and modes["palette.png"] == "P"
    assert modes["alpha.png"] == "RGBA"
    head = huge_png(100_000, 100_000)[:33]
    assert head[12:16] == b"IHDR" and struct.unpack(">II", head[16:24]) == (100_000, 100_000)
    assert struct.unpack(">I", head[29:33])[0] == zlib.crc32(head[12:29])
