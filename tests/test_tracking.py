"""Face tracks through a clip: box overlap, track life, ids of crossing faces, one-euro filter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facemend.inference import tracking
from facemend.inference.detect import DetectOptions, Face
from facemend.inference.tracking import FaceTracker, OneEuro, TrackOptions, iou

FPS = 25.0
FRAME = np.zeros((480, 640, 3), np.uint8)


def face_at(x: float, y: float, side: float = 100.0) -> Face:
    """A face whose box has its top-left corner at (x, y); 5 landmarks inside the box."""
    rel = np.array([[0.7, 0.4], [0.6, 0.4], [0.3, 0.4], [0.4, 0.4], [0.5, 0.75]], np.float32)
    return Face((x, y, x + side, y + side), 1.0, rel * side + np.float32([x, y]))


def scripted(monkeypatch: pytest.MonkeyPatch, frames: list[list[Face]]) -> None:
    """The detector returns frames[i] on its i-th call."""
    calls = iter(frames)
    monkeypatch.setattr(tracking, "detect_faces", lambda img, opts: next(calls))


def run(frames: list[list[Face]], monkeypatch: pytest.MonkeyPatch,
        **options: float) -> list[dict[int, tuple[float, ...]]]:
    """Track scripted detections (detector on every frame); per frame {track id: box}."""
    scripted(monkeypatch, frames)
    tracker = FaceTracker(DetectOptions(), TrackOptions(detect_every=1, **options))
    return [{tr.id: tr.box for tr in tracker.update(FRAME, i / FPS)}
            for i in range(len(frames))]


def test_iou_of_hand_made_boxes() -> None:
    a = (0.0, 0.0, 10.0, 10.0)
    assert iou(a, a) == 1.0
    assert iou(a, (5.0, 0.0, 15.0, 10.0)) == pytest.approx(50 / 150)  # half overlap
    assert iou(a, (5.0, 5.0, 15.0, 15.0)) == pytest.approx(25 / 175)  # a quarter each
    assert iou(a, (2.0, 2.0, 8.0, 8.0)) == pytest.approx(36 / 100)  # one inside the other
    assert iou(a, (10.0, 0.0, 20.0, 10.0)) == 0.0  # touching edges
    assert iou(a, (20.0, 20.0, 30.0, 30.0)) == 0.0
    assert iou((3.0, 1.0, 9.0, 4.0), (5.0, 2.0, 12.0, 8.0)) == iou((5.0, 2.0, 12.0, 8.0),
                                                                    (3.0, 1.0, 9.0, 4.0))


def test_track_survives_two_missed_detections(monkeypatch: pytest.MonkeyPatch) -> None:
    f = face_at(100, 100)
    seen = run([[f], [], [], [f]], monkeypatch)
    assert [sorted(s) for s in seen] == [[0], [0], [0], [0]]  # the same id after two misses


def test_track_ends_after_more_missed_detections(monkeypatch: pytest.MonkeyPatch) -> None:
    f = face_at(100, 100)
    seen = run([[f], [], [], [], [f]], monkeypatch)
    assert [sorted(s) for s in seen] == [[0], [0], [0], [], [1]]  # ended; the face is new
    seen = run([[f], [], [f]], monkeypatch, max_missed=0)
    assert [sorted(s) for s in seen] == [[0], [], [1]]


def test_crossing_faces_keep_their_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    # one face walks right, the other left, 30 px lower, a fifth of their size per frame:
    # their boxes overlap while they pass
    frames = []
    for i in range(16):
        a, b = face_at(100 + 20 * i, 100), face_at(400 - 20 * i, 130)
        frames.append([a, b] if i % 2 else [b, a])  # the detector's order says nothing
    assert max(iou(fa.box, fb.box) for fa, fb in frames) > 0.3  # a real crossing
    seen = run(frames, monkeypatch)
    assert all(sorted(s) == [0, 1] for s in seen)
    first = {tid: box[1] for tid, box in seen[0].items()}  # each id's height in the frame
    for s in seen:
        for tid, box in s.items():
            assert box[1] == first[tid]
    xs = {tid: [s[tid][0] for s in seen] for tid in first}
    right = min(first, key=lambda tid: first[tid])  # the upper face walks right
    assert np.all(np.diff(xs[right]) > 0) and np.all(np.diff(xs[1 - right]) < 0)


def test_faces_followed_between_detections(monkeypatch: pytest.MonkeyPatch) -> None:
    # the detector runs on frame 0 only; the landmark fitter finds the face 8 px further right
    # in each frame, and the track's box follows it
    start = face_at(100, 100)
    scripted(monkeypatch, [[start]])
    fits = iter(range(1, 10))

    def fitted(img: np.ndarray, box: tuple[float, ...], points: int) -> np.ndarray:
        return start.landmarks5 + np.float32([8 * next(fits), 0])

    monkeypatch.setattr(tracking, "landmarks", fitted)
    tracker = FaceTracker(DetectOptions(landmarks68=False), TrackOptions(detect_every=10))
    boxes = [tracker.update(FRAME, i / FPS)[0].box for i in range(5)]
    assert [b[0] for b in boxes] == pytest.approx([100, 108, 116, 124, 132])


def alpha(cutoff: float, dt: float) -> float:
    """Exponential smoothing factor of a low-pass at this cut-off (Casiez et al. 2012)."""
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))


def test_one_euro_constant_signal_stays_constant() -> None:
    f = OneEuro(1.0, 2.0, 1.0, hold=0.02)
    x = np.array([[12.5, -3.0], [7.0, 8.25]])
    for i in range(50):
        assert np.array_equal(f(x, i / FPS, 100.0), x.astype(np.float32))


def test_one_euro_step_is_a_low_pass_whose_cutoff_rises_with_speed() -> None:
    dt = 1 / FPS
    plain = OneEuro(1.0, 0.0, 1.0)  # beta 0: an exponential low-pass at 1 Hz
    plain(np.zeros(1), 0.0)
    a = alpha(1.0, dt)
    for n in range(1, 6):
        assert float(plain(np.ones(1), n * dt)[0]) == pytest.approx(1 - (1 - a) ** n, rel=1e-5)
    # the default filter on a step of a tenth of the face (side 1): the speed estimate after
    # one frame is 0.1 / dt low-passed at d_cutoff, and lifts the cut-off by beta per unit
    f = OneEuro(1.0, 2.0, 1.0, hold=0.02)
    f(np.zeros((5, 2)), 0.0, 1.0)
    speed = alpha(1.0, dt) * 0.1 / dt * math.sqrt(2)  # (x, y) both moved: |v| per point
    first = float(f(np.full((5, 2), 0.1), dt, 1.0)[0, 0])
    assert first == pytest.approx(0.1 * alpha(1.0 + 2.0 * speed, dt), rel=1e-5)
    assert first > 0.1 * a  # faster than the plain low-pass
    # the documented lag: within the hold (2 % of the face) of its new place after 3 frames
    out = [float(f(np.full((5, 2), 0.1), (n + 1) * dt, 1.0)[0, 0]) for n in range(1, 10)]
    assert 0.1 - out[0] > 0.02 and 0.1 - out[1] <= 0.02
    slow = OneEuro(1.0, 0.0, 1.0, hold=0.02)  # without the speed term: 8 frames
    slow(np.zeros((5, 2)), 0.0, 1.0)
    lag = [0.1 - float(slow(np.full((5, 2), 0.1), n * dt, 1.0)[0, 0]) for n in range(1, 10)]
    assert lag[6] > 0.02 and lag[7] <= 0.02


def test_one_euro_holds_within_two_percent_of_the_face() -> None:
    side = 200.0
    f = OneEuro(1.0, 2.0, 1.0, hold=0.02)
    rest = np.array([[50.0, 60.0], [90.0, 60.0]])
    f(rest, 0.0, side)
    rng = np.random.default_rng(0)
    for i in range(1, 40):  # the fitter's jitter, up to 2 % of the face: held exactly
        jitter = rng.uniform(-0.02, 0.02, rest.shape) * side
        assert np.array_equal(f(rest + jitter, i / FPS, side), rest.astype(np.float32))
    moved = f(rest + 0.021 * side, 40 / FPS, side)  # just beyond: followed
    assert np.all(moved > rest)
    same = OneEuro(1.0, 2.0, 1.0, hold=0.02)  # the hold scales with the face: 2 % of 50 px
    same(rest, 0.0, 50.0)
    assert np.all(same(rest + 2.0, 1 / FPS, 50.0) > rest)
