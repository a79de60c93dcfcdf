"""Clips at a variable frame rate: every frame keeps its time, the clip its duration and sound."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av")

from facemend.bench.clips import clip_frames, write_clip  # noqa: E402
from facemend.inference.video import Audio, Frame, VideoReader  # noqa: E402
from facemend.inference.video_restore import VideoOptions, restore_video  # noqa: E402

PHOTO = Path(__file__).resolve().parents[1] / "examples" / "photos" / "john2.jpg"
SETTINGS = {"detector": "hog", "smallest_face": 1 / 20, "colour_match": True, "detail": False,
            "face_shaped_mask": True, "identity_guard": None}
# frame gaps (s): 1/30 and 1/15 in turn, then two of 1/10; a run of 1/30 then of 1/15
ALTERNATING = [Fraction(1, 30), Fraction(1, 15)] * 5 + [Fraction(1, 10)] * 2
SLOWING = [Fraction(1, 30)] * 7 + [Fraction(1, 15)] * 6


def stand_in() -> SimpleNamespace:
    """A restorer whose model returns its input, with every setting FaceRestorer has."""
    return SimpleNamespace(model=lambda x: x, size=64, batch_size=4, identity_fn=None,
                           settings=SETTINGS)


def stream_seconds(path: Path) -> float:
    """The video stream's duration as FFmpeg reads it (from the span of its frames' times)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return float(s.duration * s.time_base)


def track_header_seconds(path: Path) -> float:
    """The duration an MP4's first track (its video) states in its track header, in seconds."""
    data = path.read_bytes()
    m = data.index(b"mvhd")
    timescale = struct.unpack(">I", data[m + 16 : m + 20] if data[m + 4] == 0
                              else data[m + 24 : m + 28])[0]
    t = data.index(b"tkhd")
    duration = struct.unpack(">I", data[t + 24 : t + 28])[0] if data[t + 4] == 0 else \
        struct.unpack(">Q", data[t + 32 : t + 40])[0]
    return duration / timescale


def frames_and_sound(path: Path) -> tuple[list[float], list[bytes]]:
    """Each frame's time (s) and the sound's packets' bytes."""
    r = VideoReader(path)
    items = list(r.items())
    r.close()
    return ([i.time for i in items if isinstance(i, Frame)],
            [bytes(i.packet) for i in items if isinstance(i, Audio)])


@pytest.mark.parametrize(("suffix", "gaps"), [(".mp4", ALTERNATING), (".mkv", SLOWING)])
def test_variable_rate_clip_keeps_frame_times_and_duration(tmp_path: Path, suffix: str,
                                                           gaps: list[Fraction]) -> None:
    times = [Fraction(0)]
    for g in gaps:
        times.append(times[-1] + g)
    end = float(times[-1] + gaps[-1])  # the last frame lasts as long as the gap before it
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    clip = write_clip(tmp_path / f"vfr{suffix}", clip_frames(photo, len(times), (160, 120)),
                      times=times)
    t_in, sound_in = frames_and_sound(clip)
    assert np.allclose(t_in, [float(t) for t in times], atol=1e-3)  # ms in Matroska
    res = restore_video(stand_in(), clip, tmp_path / "out.mp4", VideoOptions(), progress=False)
    t_out, sound_out = frames_and_sound(res.output)
    assert res.frames == len(t_out) == len(times)
    assert np.allclose(t_out, [float(t) for t in times], atol=1e-3)
    assert abs(stream_seconds(res.output) - end) <= 2e-3
    # the track header's length ends where the last packet in decoding order stops being
    # shown; where the frame rate changes, H.264's frame reordering puts that up to a frame late
    assert end - 2e-3 <= track_header_seconds(res.output) < end + float(max(gaps))
    assert sound_out == sound_in and sound_in  # the sound's packets copied unchanged


def test_even_rate_clip_ends_one_frame_after_its_last(tmp_path: Path) -> None:
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    clip = write_clip(tmp_path / "c.mp4", clip_frames(photo, 10, (160, 120)), fps=24)
    res = restore_video(stand_in(), clip, tmp_path / "out.mp4", VideoOptions(), progress=False)
    t_out, _ = frames_and_sound(res.output)
    assert np.allclose(t_out, np.arange(10) / 24, atol=1e-4)
    assert abs(stream_seconds(res.output) - 10 / 24) <= 1e-4
    assert abs(track_header_seconds(res.output) - 10 / 24) <= 2e-3


def test_new_frame_rate_times_frames_evenly(tmp_path: Path) -> None:
    times = [Fraction(0)]
    for g in SLOWING:
        times.append(times[-1] + g)
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    clip = write_clip(tmp_path / "vfr.mp4", clip_frames(photo, len(times), (160, 120)),
                      times=times)
    res = restore_video(stand_in(), clip, tmp_path / "out.mp4", VideoOptions(fps=12),
                        progress=False)
    t_out, _ = frames_and_sound(res.output)
    assert np.allclose(t_out, np.arange(len(times)) / 12, atol=1e-4)
    assert abs(stream_seconds(res.output) - len(times) / 12) <= 1e-4
    assert abs(track_header_seconds(res.output) - len(times) / 12) <= 2e-3
