"""The web app: restore page + `POST /api/restore`, result files, `/healthz`, optional study.

One process holds one Generator, loaded once by `create_app`. Restorations run on a thread pool
of `workers` threads; at most `workers + max_queue` requests are admitted at once and the next
gets 503 with a JSON `detail` (the client retries later). Uploads are limited while they are
read (`upload_limit.UploadLimit`: Content-Length first, then every chunk counted, so a chunked
upload stops at the cap instead of filling the disk), and the stored results by count and by
bytes (`results.ResultStore`). Every error a
client can cause is a 4xx JSON `{"detail": "<one line>"}`; anything else is a 500 with a generic
detail (the traceback goes to the server log only). `/docs` (Swagger UI) is served from the files
of the `fastapi-offline` package: no page of this app loads anything from another host.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from facemend.web.results import (
    MEDIA_TYPES,
    ResultStore,
    UploadError,
    decode_upload,
    encode_image,
    photo_format,
)
from facemend.web.upload_limit import UploadLimit

STATIC = Path(__file__).resolve().parent / "static"
# Swagger UI files from the `fastapi-offline` package, so /docs works without a CDN
DOCS_STATIC = Path(fastapi_offline.__file__).resolve().parent / "static"
log = logging.getLogger("facemend.web")


@dataclass(frozen=True)
class ServerSettings:
    """Everything `facemend serve` can set (defaults suit one CPU user)."""

    weights: str | None = None  # None: the bundled weights/default
    study: str | None = None  # study.sqlite from `facemend study create`
    device: str = "cpu"
    workers: int = 1  # restorations running at once
    max_queue: int = 4  # admitted requests waiting for a worker; beyond -> 503
    max_upload_mb: float = 20.0
    max_pixels: int = 40_000_000
    max_samples: int = 4
    max_results: int = 100  # results kept (oldest dropped first)
    max_store_mb: float = 1024.0  # bytes of results kept (oldest dropped first)
    result_ttl_s: float = 3600.0
    identity: bool = True  # identity similarity per face (dlib face embeddings)
    detector: str = "hog"


class FaceOut(BaseModel):
    """One restored face: where it is, its similarity to the input, its before/after images."""

    index: int
    box: list[float]
    identity: list[float | None]
    input: str
    restored: list[str]


class RestoreOut(BaseModel):
    """Answer of POST /api/restore: faces, one whole image per sample, or a message."""

    id: str
    width: int
    height: int
    faces: list[FaceOut]
    images: list[str]
    input: str
    message: str | None
    settings: dict[str, Any]
    timings: dict[str, float]


class BusyError(RuntimeError):
    """Too many requests admitted already."""


class RestoreQueue:
    """A thread pool with bounded admission: `submit` raises BusyError past the limit."""

    def __init__(self, workers: int, max_queue: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="restore")
        self.limit, self.active = workers + max_queue, 0
        self._lock = threading.Lock()

    async def run(self, fn: Any, *args: Any) -> Any:
        """Run fn(*args) on the pool once admitted; raises BusyError when full."""
        with self._lock:
            if self.active >= self.limit:
                raise BusyError(f"server busy ({self.active} requests in progress); retry later")
            self.active += 1
        try:
            return await asyncio.wrap_future(self.pool.submit(fn, *args))
        finally:
            with self._lock:
                self.active -= 1


# ISO base media brands of still images (AVIF, HEIF), which share MP4's `ftyp` box
IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"}


def clip_container(data: bytes, filename: str | None) -> str | None:
    """'mp4', 'mov', 'mkv', 'webm' or 'avi' for a video clip (by its bytes, else its name)."""
    head = data[:16]
    if head[4:8] == b"ftyp" and head[8:12] not in IMAGE_BRANDS:
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide"):
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska or WebM
        return "webm" if b"webm" in data[:64] else "mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    suffix = Path(filename or "").suffix.lower().lstrip(".")
    return suffix if suffix in ("mp4", "mov", "mkv", "webm", "avi") else None


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class Restorer:
    """The loaded model + face-embedding net, and the photo -> stored result job."""

    def __init__(self, s: ServerSettings, store: ResultStore, model: Any = None) -> None:
        from facemend.inference.api import FaceRestorer

        self.s, self.store = s, store
        self.identity_note: str | None = None
        kw = {"device": s.device, "detector": s.detector}
        try:
            self.api = FaceRestorer(s.weights, model=model, identity=s.identity, **kw)
            if s.identity:
                from facemend.faces.dlib_resnet import load_face_net

                load_face_net(device=s.device)  # once, now: fail early and say so
        except (OSError, ValueError, ImportError) as e:
            if not s.identity:
                raise
            self.identity_note = f"identity similarity off: {str(e).splitlines()[0]}"
            log.warning(self.identity_note)
            self.api = FaceRestorer(s.weights, model=model, identity=False, **kw)
        self.weights = self.api.info["weights"]
        self.size = self.api.size
        self.identity_fn = self.api.identity_fn

    def __call__(self, data: bytes, noise_scale: float, seed: int, samples: int,
                 upscale: float = 1.0) -> dict:
        """Decode, restore, store; returns the RestoreOut fields."""
        upload = decode_upload(data, self.s.max_pixels)
        img = upload.rgb
        res = self.api.enhance(img, samples=samples, upscale=upscale, noise_scale=noise_scale,
                               seed=seed)
        rid = self.store.new()
        url = f"/api/results/{rid}/"
        self.store.put(rid, upload.stored_name, upload.stored)
        faces = []
        for f in res.faces:
            self.store.put(rid, f"face_{f.index:02d}_input.png", encode_image(f.cropped))
            restored = []
            for k, face in enumerate(f.restored):
                name = f"face_{f.index:02d}_s{k}.png"
                self.store.put(rid, name, encode_image(face))
                restored.append(url + name)
            faces.append({"index": f.index, "box": [round(float(v), 1) for v in f.box],
                          "identity": [None if v is None else round(v, 4) for v in f.identity],
                          "input": url + f"face_{f.index:02d}_input.png", "restored": restored})
        images = []
        if res.faces:
            for k, image in enumerate(res.images):
                fmt = photo_format(image)
                self.store.put(rid, f"image_s{k}.{fmt}", encode_image(image, fmt))
                images.append(url + f"image_s{k}.{fmt}")
        message = None if res.faces else "no face found in this photo; nothing was restored"
        return {"id": rid, "width": int(img.shape[1]), "height": int(img.shape[0]),
                "faces": faces, "images": images, "input": url + upload.stored_name,
                "message": message,
                "settings": {"noise_scale": noise_scale, "seed": seed, "samples": samples,
                             "upscale": upscale, "identity": self.identity_fn is not None},
                "timings": {k: round(v, 4) for k, v in res.timings.items()}}


def create_app(settings: ServerSettings = ServerSettings(), model: Any = None) -> FastAPI:
    """The FastAPI app; loads the model now (pass `model` to reuse one already in memory)."""
    s = settings
    store = ResultStore(s.max_results, s.result_ttl_s, max_bytes=int(s.max_store_mb * 2**20))
    try:
        restorer = Restorer(s, store, model)
    except BaseException:
        store.close()
        raise
    queue = RestoreQueue(s.workers, s.max_queue)
    max_bytes = int(s.max_upload_mb * 1024 * 1024)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        yield
        queue.pool.shutdown(wait=False, cancel_futures=True)
        store.close()

    app = FastAPI(title="facemend", lifespan=lifespan, docs_url=None, redoc_url=None,
                  summary="Face restoration (Rethinking Deep Face Restoration): restore photos, "
                  "run a blind user study.")
    app.state.store, app.state.queue, app.state.restorer = store, queue, restorer

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query"))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return _error(500, "internal error (see the server log)")

    too_large = f"upload too large; the limit is {s.max_upload_mb:g} MB"
    # the multipart body: the file plus up to 64 KiB of boundaries and form fields
    app.add_middleware(UploadLimit, path="/api/restore", max_bytes=max_bytes + 64 * 1024,
                       detail=too_large)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="facemend API",
            swagger_js_url="/docs-static/swagger-ui-bundle.js",
            swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon.png")

    @app.get("/healthz", summary="Liveness and settings")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": {"weights": restorer.weights,
                                          "resolution": restorer.size, "device": s.device},
                "identity": restorer.identity_fn is not None, "identity_note":
                restorer.identity_note, "queue": {"active": queue.active, "limit": queue.limit},
                "results_stored": len(store), "study": s.study is not None,
                "limits": {"max_upload_mb": s.max_upload_mb, "max_pixels": s.max_pixels,
                           "max_samples": s.max_samples, "max_results": s.max_results,
                           "max_store_mb": s.max_store_mb}}

    @app.post("/api/restore", response_model=RestoreOut, summary="Restore every face of a photo",
              responses={400: {"description": "bad upload"}, 413: {"description": "too large"},
                         415: {"description": "not an image (a video clip, say)"},
                         422: {"description": "bad field"},
                         503: {"description": "queue full, retry later"}})
    async def restore(
        file: UploadFile = File(..., description="photo (JPEG, PNG, WebP, BMP, TIFF, GIF)"),
        noise_scale: float = Form(1.0, ge=0.0, le=2.0,
                                  description="0 = deterministic, 1 = as trained"),
        seed: int = Form(0, ge=0, le=2**31 - 1, description="noise seed (repeatable)"),
        samples: int = Form(1, ge=1, le=s.max_samples, description="restorations per face"),
        upscale: float = Form(1.0, ge=1.0, le=4.0, description="photo upscale factor (1-4)"),
    ) -> Any:
        data = await file.read(max_bytes + 1)
        clip = clip_container(data, file.filename)
        if clip is not None:
            return _error(415, f"a video clip ({clip}); this page restores photos, restore clips "
                          "with `facemend restore CLIP -o OUT`")
        if len(data) > max_bytes:
            return _error(413, too_large)
        try:
            return await queue.run(restorer, data, noise_scale, seed, samples, upscale)
        except BusyError as e:
            return _error(503, str(e))
        except UploadError as e:
            return _error(e.status, str(e))

    @app.get("/api/results/{rid}/{name}", summary="A result image (id and name from /api/restore)",
             responses={404: {"description": "unknown, expired or invalid id/name"}})
    def result(rid: str, name: str, download: bool = False) -> Any:
        p = store.path(rid, name)
        if p is None:
            return _error(404, "no such result (expired, or not from this server)")
        fname = f"facemend_{rid[:8]}_{name}" if download else None
        return FileResponse(p, media_type=MEDIA_TYPES[p.suffix[1:]], filename=fname,
                            headers={"Cache-Control": "private, max-age=600"})

    if s.study is not None:
        from facemend.web.study_routes import study_router

        app.include_router(study_router(s.study))

        @app.get("/study", include_in_schema=False)
        def study_page() -> FileResponse:
            return FileResponse(STATIC / "study.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-static", StaticFiles(directory=DOCS_STATIC), name="docs-static")
    return app
