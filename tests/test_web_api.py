"""`facemend serve` API with FastAPI's TestClient and a tiny random model (32 px)."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from facemend.config import ModelConfig  # noqa: E402
from facemend.models.generator import Generator  # noqa: E402
from facemend.models.pretrained import save_pretrained  # noqa: E402
from facemend.web.app import BusyError, RestoreQueue, ServerSettings, create_app  # noqa: E402
from facemend.web.results import ResultStore  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[1] / "examples" / "photos"
TINY = ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=16, num_skips=1,
                   codebook_size=8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny random generator saved as a weights folder."""
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    save_pretrained(Generator(TINY), folder)
    return folder


@pytest.fixture(scope="module")
def client(weights):
    """A client of an app with a 0.5 MB upload limit (raises no server exceptions)."""
    app = create_app(ServerSettings(weights=str(weights), max_upload_mb=0.5))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _post(client, name: str, data: bytes, **fields):
    return client.post("/api/restore", files={"file": (name, data, "image/jpeg")},
                       data={k: str(v) for k, v in fields.items()})


def _image(resp, media: str = "image/png") -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == media
    return np.asarray(Image.open(io.BytesIO(resp.content)))


def test_restore_photo_returns_faces_and_downloadable_links(client):
    photo = PHOTOS / "john2.jpg"
    r = _post(client, "john2.jpg", photo.read_bytes(), noise_scale=0.5, seed=3, samples=2)
    assert r.status_code == 200, r.text
    res = r.json()
    w, h = Image.open(photo).size
    assert (res["width"], res["height"]) == (w, h) and res["message"] is None
    assert res["settings"] == {"noise_scale": 0.5, "seed": 3, "samples": 2, "upscale": 1.0,
                               "identity": True}
    assert len(res["faces"]) >= 1 and len(res["images"]) == 2
    face = res["faces"][0]
    x0, y0, x1, y1 = face["box"]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert len(face["identity"]) == 2 and all(-1 <= s <= 1 for s in face["identity"])
    side = _image(client.get(face["input"])).shape  # the face at its own size in the photo
    assert side[0] == side[1] > 32 and side[2] == 3
    for url in face["restored"]:
        assert _image(client.get(url)).shape == side

    for url in res["images"]:
        assert _image(client.get(url)).shape == (h, w, 3)
    d = client.get(res["images"][0] + "?download=1")
    assert d.status_code == 200 and "attachment" in d.headers["content-disposition"]
    # the input is kept as uploaded (a JPEG stays that JPEG, not a PNG many times its size)
    assert res["input"].endswith("/input.jpg")
    assert client.get(res["input"]).content == photo.read_bytes()
    assert np.array_equal(_image(client.get(res["input"]), "image/jpeg"),
                          np.asarray(Image.open(photo)))


def test_upscale_field_scales_the_photo(client):
    photo = PHOTOS / "john2.jpg"
    r = _post(client, "john2.jpg", photo.read_bytes(), upscale=2)
    assert r.status_code == 200, r.text
    res = r.json()
    w, h = Image.open(photo).size
    assert _image(client.get(res["images"][0])).shape[:2] == (2 * h, 2 * w)
    assert _post(client, "john2.jpg", photo.read_bytes(), upscale=9).status_code == 422

def test_no_face_photo_says_so(client):
    ramp = np.linspace(0, 255, 160 * 200 * 3).reshape(160, 200, 3).astype(np.uint8)
    r = _post(client, "plain.png", _png(ramp))
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["faces"] == [] and res["images"] == [] and "no face" in res["message"]


@pytest.mark.parametrize(("data", "status", "words"), [
    (b"this is a text file, not a photo\n", 415, "not a readable image"),
    (b"", 400, "empty upload"),
    (b"GIF89a" + b"\x00" * 10, 415, "not a readable image"),
    (b"\x80\x04\x95pickle", 415, "not a readable image"),
    (_png(np.zeros((4, 4, 3), np.uint8)), 400, "at least 8x8"),
])
def test_bad_uploads_are_4xx_json(client, data, status, words):
    r = _post(client, "photo.jpg", data)
    assert r.status_code == status and words in r.json()["detail"]
    assert "\n" not in r.json()["detail"] and "Traceback" not in r.text


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".webm", ".avi"])
def test_clips_are_415_naming_the_command_line(client, tmp_path, suffix):
    pytest.importorskip("av")
    from facemend.bench.clips import write_clip

    frames = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(3)]
    data = write_clip(tmp_path / f"clip{suffix}", frames, tone_hz=None).read_bytes()
    for name in (f"clip{suffix}", "upload.bin"):  # by its bytes whatever its name
        r = _post(client, name, data)
        detail = r.json()["detail"]
        assert r.status_code == 415 and "facemend restore" in detail and "\n" not in detail
        assert f"({suffix[1:]})" in detail


def test_photo_in_an_iso_box_is_not_a_clip(client):
    avif_like = b"\x00\x00\x00\x1cftypavif" + b"\x00" * 64  # AVIF shares MP4's boxes
    r = _post(client, "photo.avif", avif_like)
    assert r.status_code == 415 and "not a readable image" in r.json()["detail"]


def test_oversized_uploads_are_413(client):
    limit = int(0.5 * 1024 * 1024)
    for size in (limit + 1000, 4 * limit):  # body read check; Content-Length check
        r = _post(client, "big.jpg", b"\xff" * size)
        assert r.status_code == 413 and "too large" in r.json()["detail"], size


def _multipart(size: int, boundary: str = "b0undary") -> tuple[bytes, bytes, dict]:
    """(head, tail, headers) of a multipart upload whose file part is `size` bytes long."""
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), {
        "content-type": f"multipart/form-data; boundary={boundary}"}


def test_chunked_upload_is_cut_off_at_the_limit(client):
    """A body without Content-Length is counted while read: reading stops past the cap."""
    limit = int(0.5 * 1024 * 1024)
    head, tail, headers = _multipart(64 * limit)
    chunk = b"\xff" * 65536
    pulled = 0

    async def receive() -> dict:
        nonlocal pulled
        if pulled >= 64 * limit:
            return {"type": "http.request", "body": tail, "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": (head if pulled == len(chunk) else b"") + chunk,
                "more_body": True}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/restore", "raw_path": b"/api/restore",
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "server": ("test", 80), "client": ("test", 1), "app": client.app,
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(client.app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413 and b"too large" in body
    assert pulled <= limit + 64 * 1024 + 2 * len(chunk)  # 32 MB offered, ~0.6 MB read


def test_chunked_upload_spools_at_most_the_limit(client, monkeypatch):
    """Through HTTP (no Content-Length): 413, and no more than the cap is spooled to disk."""
    from starlette.datastructures import UploadFile

    written = []
    real_write = UploadFile.write

    async def counting_write(self, data: bytes) -> None:
        written.append(len(data))
        await real_write(self, data)

    monkeypatch.setattr(UploadFile, "write", counting_write)
    limit = int(0.5 * 1024 * 1024)
    head, tail, headers = _multipart(16 * limit)

    def body():
        yield head
        for _ in range(16 * 8):
            yield b"\xff" * (limit // 8)
        yield tail

    r = client.post("/api/restore", content=body(), headers=headers)
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    assert sum(written) <= limit + 64 * 1024, sum(written)


def test_result_store_is_capped_by_bytes(tmp_path):
    store = ResultStore(max_results=100, ttl_s=3600, root=tmp_path / "s", max_bytes=1000)
    ids = []
    for _ in range(3):
        ids.append(store.new())
        store.put(ids[-1], "input.jpg", b"x" * 400)
    assert store.path(ids[0], "input.jpg") is None and not (tmp_path / "s" / ids[0]).exists()
    assert store.path(ids[2], "input.jpg") is not None and store.total_bytes() == 800
    big = store.new()
    store.put(big, "input.jpg", b"x" * 2000)  # alone over the cap: kept, every older one goes
    assert len(store) == 1 and store.path(big, "input.jpg") is not None
    du = sum(f.stat().st_size for f in (tmp_path / "s").rglob("*") if f.is_file())
    assert du == store.total_bytes() == 2000
    store.close()


def test_large_photo_results_are_stored_compactly(weights, monkeypatch):
    """Whole photos above LOSSLESS_MAX_PIXELS are JPEG; a TIFF input is kept as a JPEG."""
    import facemend.web.results as results

    monkeypatch.setattr(results, "LOSSLESS_MAX_PIXELS", 100 * 100)
    photo = np.asarray(Image.open(PHOTOS / "john2.jpg").convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="TIFF")
    app = create_app(ServerSettings(weights=str(weights), identity=False))
    with TestClient(app) as c:
        r = _post(c, "john2.tif", buf.getvalue())
        assert r.status_code == 200, r.text
        res = r.json()
        assert res["input"].endswith("/input.jpg") and res["images"][0].endswith(".jpg")
        stored = c.get(res["input"]).content
        assert len(stored) < len(buf.getvalue()) / 3
        assert _image(c.get(res["images"][0]), "image/jpeg").shape == photo.shape
        store = c.app.state.store
        du = sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file())
        assert du == store.total_bytes() < len(buf.getvalue())


def test_sixteen_bit_and_float_uploads_decode_as_restore_does(weights, tmp_path):
    """The web page uses the loader of `facemend restore`: 16-bit PNG and float TIFF."""
    base = np.asarray(Image.open(PHOTOS / "john2.jpg").convert("L"), dtype=np.float64)
    cases = {"g16.png": Image.fromarray((base * 257).astype(np.uint16)),
             "f32.tif": Image.fromarray((base / 255.0).astype(np.float32), "F")}
    app = create_app(ServerSettings(weights=str(weights), identity=False))
    with TestClient(app) as c:
        for name, im in cases.items():
            path = tmp_path / name
            im.save(path)
            r = _post(c, name, path.read_bytes(), noise_scale=0)
            assert r.status_code == 200, r.text
            res = r.json()
            assert res["message"] is None and len(res["faces"]) >= 1, name  # not white/black
            media = "image/jpeg" if name.endswith(".tif") else "image/png"
            shown = _image(c.get(res["input"]), media).astype(np.float64)
            shown = shown.mean(axis=2) if shown.ndim == 3 else shown / 257.0
            assert abs(shown.mean() - base.mean()) < 1.5, name


def test_too_many_pixels_is_413(weights):
    app = create_app(ServerSettings(weights=str(weights), max_pixels=100 * 100, identity=False))
    with TestClient(app) as c:
        r = _post(c, "wide.png", _png(np.zeros((100, 101, 3), np.uint8)))
        assert r.status_code == 413 and "MP" in r.json()["detail"]


def test_bad_fields_are_422_one_line(client):
    photo = (PHOTOS / "john2.jpg").read_bytes()
    for fields, word in [({"noise_scale": 5}, "noise_scale"), ({"samples": 9}, "samples"),
                         ({"seed": "x"}, "seed")]:
        r = _post(client, "a.jpg", photo, **fields)
        assert r.status_code == 422 and r.json()["detail"].startswith(word), r.text
    r = client.post("/api/restore", data={"seed": "1"})
    assert r.status_code == 422 and r.json()["detail"].startswith("file")


def test_results_are_served_only_by_valid_ids(client):
    for url in ["/api/results/" + "0" * 32 + "/input.png",  # valid form, unknown id
                "/api/results/xyz/input.png", "/api/results/" + "0" * 32 + "/secret.txt",
                "/api/results/..%2F..%2Fetc/passwd", "/api/results/../../etc/passwd"]:
        r = client.get(url)
        assert r.status_code == 404 and "detail" in r.json(), url


def test_internal_errors_are_generic_500(client, monkeypatch):
    import facemend.inference.api as api_mod

    def boom(*a, **k):
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(api_mod, "restore_photo", boom)
    r = _post(client, "a.jpg", (PHOTOS / "john2.jpg").read_bytes())
    assert r.status_code == 500 and r.json() == {"detail": "internal error (see the server log)"}


def test_full_queue_is_503(client):
    q = client.app.state.queue
    q.active = q.limit
    try:
        r = _post(client, "a.jpg", (PHOTOS / "john2.jpg").read_bytes())
    finally:
        q.active = 0
    assert r.status_code == 503 and "busy" in r.json()["detail"]


def test_restore_queue_admits_at_most_workers_plus_queue():
    q = RestoreQueue(workers=1, max_queue=1)
    gate = threading.Event()

    async def main() -> list:
        first = asyncio.ensure_future(q.run(gate.wait))
        second = asyncio.ensure_future(q.run(lambda: 2))
        await asyncio.sleep(0.05)
        with pytest.raises(BusyError):
            await q.run(lambda: 3)
        gate.set()
        return [await first, await second]

    assert asyncio.run(main()) == [True, 2] and q.active == 0
    q.pool.shutdown()


def test_result_store_cap_and_ttl(tmp_path):
    store = ResultStore(max_results=2, ttl_s=3600, root=tmp_path / "s")
    ids = []
    for _ in range(3):
        ids.append(store.new())
        store.put(ids[-1], "input.png", b"x")
    assert store.path(ids[0], "input.png") is None and not (tmp_path / "s" / ids[0]).exists()
    assert store.path(ids[2], "input.png") is not None and len(store) == 2
    assert store.path(ids[2], "../input.png") is None
    store.ttl_s = 0.01
    time.sleep(0.02)
    assert store.path(ids[2], "input.png") is None and len(store) == 0
    store.close()
    assert not (tmp_path / "s").exists()


def test_healthz_docs_and_pages(client):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["model"]["resolution"] == 32 and h["study"] is False
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn" not in docs.text and 'src="/docs-static/swagger-ui-bundle.js"' in docs.text
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/restore" in spec["paths"] and "/healthz" in spec["paths"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no external resources
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/study").status_code == 404  # no study configured


def test_serve_command_errors_are_one_line(tmp_path, capsys):
    from facemend.cli import main

    assert main(["serve", "--study", str(tmp_path / "none.sqlite")]) == 2
    assert "study file not found" in capsys.readouterr().err
    assert main(["serve", "--weights", str(tmp_path), "--no-identity"]) == 2
    err = capsys.readouterr().err.strip()
    assert "config.json" in err and "\n" not in err
    assert main(["serve", "--workers", "0"]) == 2
    capsys.readouterr()
    assert main(["serve", "--max-samples", "65"]) == 2  # more than restore allows
    assert "at most 64" in capsys.readouterr().err
