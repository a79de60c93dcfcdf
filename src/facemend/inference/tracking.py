"""Faces followed through a video: tracks with ids, smoothed landmarks and a noise seed each.

Detection runs on every k-th frame; a detected face joins the track whose last box it overlaps
most (IoU, greedy, largest overlap first), or starts a new track. On the frames in between each
track is followed by refitting dlib's landmark predictors inside its box moved by the last
motion of its landmarks. A track survives `max_missed` detection frames without a match, then
ends. Along a track the 5 (and 68) landmarks go through a one-euro filter (Casiez et al., CHI
2012): a low-pass whose cut-off rises with the speed of the landmarks, so a still face is held
steady and a moving one is followed without lag. Speeds are measured in face sizes per second,
so the filter behaves the same for a face of any size; landmarks that stay within `hold` face
sizes of the filtered ones (the fitter's jitter on a still face) leave them where they are.
With the defaults at 25 fps, a step of a tenth of the face size comes within that hold of its
new place in 3 frames (a plain 1 Hz low-pass would take 8).
Each track keeps one noise seed, so the model draws the same noise tensors for that face in
every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from facemend.inference.detect import DetectOptions, Face, detect_faces, landmarks

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackOptions:
    """How faces are followed: detection period, matching, track life and smoothing."""

    detect_every: int = 5  # run the detector on frames 0, k, 2k, ...; refit landmarks between
    min_iou: float = 0.3  # a detection continues a track when their boxes overlap this much
    max_missed: int = 2  # detection frames a track may go unmatched before it ends
    min_cutoff: float = 1.0  # one-euro: cut-off (Hz) of a still face's landmarks
    beta: float = 2.0  # one-euro: cut-off rise per face size per second of landmark speed
    d_cutoff: float = 1.0  # one-euro: cut-off (Hz) of the speed estimate
    hold: float = 0.02  # landmarks within this many face sizes of the held ones stay put
    smooth: bool = True  # False: landmarks as fitted (frame-by-frame restoration)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _alpha(cutoff: float, dt: float) -> float:
    """Smoothing factor of an exponential low-pass with this cut-off (Hz) at step dt (s)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """One-euro filter of an array signal (e.g. (5, 2) landmarks), speed in units of `scale`."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float,
                 hold: float = 0.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff, self.hold = min_cutoff, beta, d_cutoff, hold
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t = 0.0

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """The filtered value of sample x at time t (seconds, increasing)."""
        x = np.asarray(x, np.float64)
        if self.x is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.astype(np.float32)
        dt = t - self.t
        if np.abs(x - self.x).max() <= self.hold * scale:  # a still face: the fitter's jitter
            self.t = t
            self.dx = np.zeros_like(x)
            return self.x.astype(np.float32)
        dx = (x - self.x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        speed = float(np.linalg.norm(self.dx, axis=-1).mean()) / max(scale, 1e-6)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self.x = a * x + (1 - a) * self.x
        self.t = t
        return self.x.astype(np.float32)


@dataclass
class Track:
    """One face followed through the frames."""

    id: int
    seed: int  # the face's noise seed, the same in every frame
    box: Box
    landmarks5: np.ndarray  # (5, 2) as last fitted
    landmarks68: np.ndarray | None
    smooth5: np.ndarray  # (5, 2) after the one-euro filter
    smooth68: np.ndarray | None
    filters: tuple[OneEuro, OneEuro]
    missed: int = 0
    motion: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))

    @property
    def size(self) -> float:
        """Side of the box (geometric mean of width and height)."""
        x0, y0, x1, y1 = self.box
        return float(np.sqrt(max(x1 - x0, 1.0) * max(y1 - y0, 1.0)))

    def face(self) -> Face:
        """The track's face for restoration: its box and smoothed landmarks."""
        return Face(self.box, 1.0, self.smooth5, self.smooth68)


class FaceTracker:
    """Feeds frames in order; `update` returns the faces to restore in each, with their seeds."""

    def __init__(self, detect: DetectOptions, options: TrackOptions = TrackOptions(),
                 seed: int = 0) -> None:
        self.detect, self.options, self.seed = detect, options, seed
        self.tracks: list[Track] = []
        self.frame = 0
        self.next_id = 0

    def update(self, img: np.ndarray, t: float) -> list[Track]:
        """Track faces into frame `img` (RGB uint8) at time t (s); the live tracks, by id."""
        o = self.options
        if self.frame % max(o.detect_every, 1) == 0:
            self._match(detect_faces(img, self.detect), t)
        else:
            for tr in self.tracks:
                self._refit(tr, img, t)
        self.frame += 1
        return sorted(self.tracks, key=lambda tr: tr.id)

    def _match(self, found: list[Face], t: float) -> None:
        pairs = sorted(((iou(tr.box, f.box), i, j) for i, tr in enumerate(self.tracks)
                        for j, f in enumerate(found)), reverse=True)
        used_t: set[int] = set()
        used_f: set[int] = set()
        for overlap, i, j in pairs:
            if overlap < self.options.min_iou or i in used_t or j in used_f:
                continue
            used_t.add(i)
            used_f.add(j)
            tr, f = self.tracks[i], found[j]
            tr.missed = 0
            self._set(tr, f.box, f.landmarks5, f.landmarks68, t)
        for i, tr in enumerate(self.tracks):
            if i not in used_t:
                tr.missed += 1
        self.tracks = [tr for tr in self.tracks if tr.missed <= self.options.max_missed]
        for j, f in enumerate(found):
            if j not in used_f:
                self.tracks.append(self._new(f, t))

    def _new(self, f: Face, t: float) -> Track:
        o = self.options
        filters = (OneEuro(o.min_cutoff, o.beta, o.d_cutoff, o.hold),
                   OneEuro(o.min_cutoff, o.beta, o.d_cutoff, o.hold))
        tr = Track(self.next_id, self.seed + self.next_id, f.box, f.landmarks5, f.landmarks68,
                   f.landmarks5, f.landmarks68, filters)
        self.next_id += 1
        self._set(tr, f.box, f.landmarks5, f.landmarks68, t)
        return tr

    def _refit(self, tr: Track, img: np.ndarray, t: float) -> None:
        """Follow a track into a frame without detection: landmarks refitted in the moved box."""
        h, w = img.shape[:2]
        dx, dy = (float(v) for v in tr.motion)
        x0, y0, x1, y1 = tr.box
        box = (min(max(x0 + dx, 0.0), w - 1.0), min(max(y0 + dy, 0.0), h - 1.0),
               min(max(x1 + dx, 1.0), float(w)), min(max(y1 + dy, 1.0), float(h)))
        lm5 = landmarks(img, box, 5)
        lm68 = landmarks(img, box, 68) if tr.landmarks68 is not None else None
        shift = (lm5 - tr.landmarks5).mean(axis=0)  # the face's motion since the last frame
        box = (x0 + shift[0], y0 + shift[1], x1 + shift[0], y1 + shift[1])
        self._set(tr, box, lm5, lm68, t)

    def _set(self, tr: Track, box: Box, lm5: np.ndarray, lm68: np.ndarray | None,
             t: float) -> None:
        tr.motion = (np.asarray(lm5, np.float32) - tr.landmarks5).mean(axis=0)
        tr.box = tuple(float(v) for v in box)  # type: ignore[assignment]
        tr.landmarks5, tr.landmarks68 = np.asarray(lm5, np.float32), lm68
        if not self.options.smooth:
            tr.smooth5, tr.smooth68 = tr.landmarks5, lm68
            return
        scale = tr.size
        tr.smooth5 = tr.filters[0](tr.landmarks5, t, scale)
        tr.smooth68 = None if lm68 is None else tr.filters[1](lm68, t, scale)
