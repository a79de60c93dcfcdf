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


def _image(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.content)))


def test_restore_photo_returns_faces_and_downloadable_links(client):
    photo = PHOTOS / "john2.jpg"
    r = _post(client, "john2.jpg", photo.read_bytes(), noise_scale=0.5, seed=3, samples=2)
    assert r.status_code == 200, r.text
    res = r.json()
    w, h = Image.open(photo).size
    assert (res["width"], res["height"]) == (w, h) and res["message"] is None
    assert res["settings"] == {"noise_scale": 0.5, "seed": 3, "samples": 2, "identity": True}
    assert len(res["faces"]) >= 1 and len(res["images"]) == 2
    face = res["faces"][0]
    x0, y0, x1, y1 = face["box"]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert len(face["identity"]) == 2 and all(-1 <= s <= 1 for s in face["identity"])
    assert _image(client.get(face["input"])).shape == (32, 32, 3)
    for url in face["restored"]:
        assert _image(client.get(url)).shape == (32, 32, 3)
    for url in res["images"] + [res["input"]]:
        assert _image(client.get(url)).shape == (h, w, 3)
    d = client.get(res["images"][0] + "?download=1")
    assert d.status_code == 200 and "attachment" in d.headers["content-disposition"]
    assert np.array_equal(_image(client.get(res["input"])), np.asarray(Image.open(photo)))


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
    (_png(np.zeros((4, 4, 3), np.uint8)), 400, "at least 8x8"),
])
def test_bad_uploads_are_4xx_json(client, data, status, words):
    r = _post(client, "photo.jpg", data)
    assert r.status_code == status and words in r.json()["detail"]
    assert "\n" not in r.json()["detail"] and "Traceback" not in r.text


def test_oversized_uploads_are_413(client):
    limit = int(0.5 * 1024 * 1024)
    for size in (limit + 1000, 4 * limit):  # body read check; Content-Length check
        r = _post(client, "big.jpg", b"\xff" * size)
        assert r.status_code == 413 and "too large" in r.json()["detail"], size


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
    import facemend.inference.restore as restore_mod

    def boom(*a, **k):
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(restore_mod, "restore_photo", boom)
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
