"""Video in and out with PyAV (FFmpeg's libraries in its wheel): frames streamed, sound copied.

`VideoReader` demuxes a clip once, in file order: it yields decoded video frames as upright RGB
arrays (the display rotation applied, any bit depth or chroma layout converted to 8-bit RGB)
with their timestamps, and the sound's packets untouched. `VideoWriter` encodes RGB frames to
H.264 (yuv420p, BT.709, crf 18) in an MP4 at the timestamps given, and copies the sound's
packets as they come (re-encoded to AAC only where MP4 cannot hold the codec). Neither keeps
more than the codecs' own few frames, so memory does not grow with a clip's length. Every
problem with a file is a `VideoError` whose message is one line naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
MP4_AUDIO = {"aac", "mp3", "opus", "alac", "flac", "ac3", "eac3"}  # copied into MP4 as they are
DEFAULT_FPS = Fraction(25)  # for a stream that states no frame rate at all


class VideoError(ValueError):
    """A clip that cannot be read or written; the message is one line naming the file."""


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise VideoError('video needs PyAV: pip install "facemend[video]"') from None
    return av


@dataclass
class Frame:
    """One decoded frame: upright RGB pixels, presentation time stamp and time (seconds)."""

    rgb: np.ndarray  # (H, W, 3) uint8
    pts: int  # in the reader's time_base
    time: float
    index: int


@dataclass
class Audio:
    """One packet of the sound stream, to be copied as it is."""

    packet: Any


class VideoReader:
    """A clip opened for one pass: `items()` yields its Frames and Audio packets in file order."""

    def __init__(self, path: str | Path) -> None:
        av = _av()
        self.path = str(path)
        self.notes: list[str] = []
        try:
            self.container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise VideoError(f"{path}: not a readable video ({_reason(e)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{path}: no video stream in this file")
        self.video = self.container.streams.video[0]
        self.video.thread_type = "AUTO"
        self.audio = self.container.streams.audio[0] if self.container.streams.audio else None
        self.time_base: Fraction = self.video.time_base or Fraction(1, 90000)
        rate = self.video.average_rate or self.video.guessed_rate or self.video.base_rate
        if not rate:
            rate = DEFAULT_FPS
            self.notes.append(f"no frame rate stated; timed at {rate} fps")
        self.fps = Fraction(rate)
        cc = self.video.codec_context
        self.width, self.height = int(cc.width), int(cc.height)
        if self.width <= 0 or self.height <= 0:
            self.container.close()
            raise VideoError(f"{path}: video stream has no picture size")
        self.frames = int(self.video.frames or 0)
        if not self.frames and self.video.duration and self.video.time_base:
            self.frames = round(float(self.video.duration * self.video.time_base * self.fps))
        self.stated_end: float | None = None  # where the stream says its last frame ends (s)
        if self.video.duration and self.video.time_base:
            start = self.video.start_time or 0
            self.stated_end = float((start + self.video.duration) * self.video.time_base)
        self.frames_read = 0

    def items(self) -> Iterator[Frame | Audio]:
        """Frames (decoded) and sound packets (raw), in the order the file holds them."""
        av = _av()
        streams = [self.video] + ([self.audio] if self.audio is not None else [])
        last_pts = None
        try:
            for packet in self.container.demux(streams):
                if packet.stream is self.audio:
                    if packet.dts is not None and packet.size:
                        yield Audio(packet)
                    continue
                for f in packet.decode():
                    pts = f.pts if f.pts is not None else (last_pts or -1) + 1
                    if last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1  # keep timestamps increasing for the encoder
                    last_pts = pts
                    yield Frame(_upright_rgb(f), int(pts), float(pts * self.time_base),
                                self.frames_read)
                    self.frames_read += 1
        except av.FFmpegError as e:
            if not self.frames_read:
                raise VideoError(f"{self.path}: not a readable video ({_reason(e)})") from None
            self.notes.append(f"damaged after frame {self.frames_read} ({_reason(e)}); "
                              "restored what was readable")
        if not self.frames_read:
            raise VideoError(f"{self.path}: no video frames in this file")

    def end_after(self, last: float) -> float | None:
        """When the frame shown at time `last` (the last one) ends, as the stream states it;
        None where it states none, or an end that is not within 4 frame times after `last`."""
        end = self.stated_end
        return end if end is not None and last < end <= last + 4 / float(self.fps) else None

    def close(self) -> None:
        self.container.close()


def _reason(e: BaseException) -> str:
    """The short reason of an FFmpeg error, without the file name it repeats."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(text).splitlines()[0].split(": '")[0]


def _upright_rgb(f: Any) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB with its display rotation applied."""
    rgb = f.to_ndarray(format="rgb24", threads=1)
    rotation = int(round(getattr(f, "rotation", 0) or 0)) % 360
    if rotation in (90, 180, 270):  # counter-clockwise degrees of the display matrix
        rgb = np.ascontiguousarray(np.rot90(rgb, rotation // 90))
    return rgb


def even_size(width: int, height: int) -> tuple[int, int]:
    """The picture size H.264 4:2:0 can hold: each side rounded up to even."""
    return width + width % 2, height + height % 2


class VideoWriter:
    """An MP4 being written: H.264 video at the given timestamps, the reader's sound copied.

    The last frame lasts until the end given to `close` (by default as long as the gap before
    it), so that the clip's duration is its input's also where the frame rate varies.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: Fraction,
                 time_base: Fraction, audio: Any = None, crf: int = 18) -> None:
        av = _av()
        self.path = str(path)
        self.width, self.height = even_size(width, height)
        self.out = av.open(self.path, "w", format="mp4")
        self.time_base = time_base
        v = self.out.add_stream("libx264", rate=fps,
                                options={"crf": str(crf), "preset": "fast", "threads": "1"})
        v.width, v.height, v.pix_fmt = self.width, self.height, "yuv420p"
        v.time_base = time_base
        v.codec_context.time_base = time_base
        v.codec_context.colorspace = 1  # BT.709, as the pixels are converted below
        v.codec_context.color_primaries = 1
        v.codec_context.color_trc = 1
        v.codec_context.color_range = 1  # limited ("tv") range
        self.v = v
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.first_dts: int | None = None
        self.last_gap = max(round(1 / (fps * time_base)), 1)  # in time_base
        self.pending: Any = None  # the newest video packet, muxed once its duration is known
        self.a = self.encoder = self.resampler = None
        self.audio_note: str | None = None
        if audio is not None:
            name = audio.codec_context.name
            if name in MP4_AUDIO:
                self.a = self.out.add_stream_from_template(audio)
            else:
                self.encoder = self.out.add_stream("aac", rate=audio.codec_context.sample_rate)
                self.resampler = av.AudioResampler(format="fltp", layout=self.encoder.layout,
                                                   rate=self.encoder.rate)
                self.a = self.encoder
                self.audio_note = f"{name} sound cannot go into MP4; re-encoded as AAC"

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one (h, w, 3) uint8 RGB frame (edge-padded to the even size) at pts."""
        av = _av()
        h, w = rgb.shape[:2]
        if (h, w) != (self.height, self.width):
            rgb = np.pad(rgb, ((0, self.height - h), (0, self.width - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709",
                               dst_color_range="MPEG", threads=1)
        frame.pts, frame.time_base = pts, self.time_base
        if self.last_pts is not None and pts > self.last_pts:
            self.last_gap = pts - self.last_pts
        if self.first_pts is None:
            self.first_pts = pts
        self.last_pts = pts
        for p in self.v.encode(frame):
            self._mux_video(p)

    def _mux_video(self, packet: Any) -> None:
        """Mux the packet held back, hold this one (the last packet's duration is set last)."""
        if self.pending is not None:
            self.out.mux(self.pending)
        elif self.first_dts is None:
            self.first_dts = packet.dts
        self.pending = packet

    def copy_audio(self, packet: Any) -> None:
        """Copy one sound packet (or decode and re-encode it where MP4 needs that)."""
        if self.a is None:
            return
        if self.encoder is None:
            packet.stream = self.a
            self.out.mux(packet)
            return
        for frame in packet.decode():
            for r in self.resampler.resample(frame):
                for p in self.encoder.encode(r):
                    self.out.mux(p)

    def close(self, end: int | None = None) -> None:
        """Flush the encoders and finish the file (playable from here on); the last frame ends
        at `end` (in time_base; default: one gap after it)."""
        for p in self.v.encode(None):
            self._mux_video(p)
        if self.pending is not None:
            assert self.last_pts is not None
            if end is None or end <= self.last_pts:
                end = self.last_pts + self.last_gap
            # x264 gives packets no duration, and MP4 would take the last one's (in decoding
            # order) from the frame rate. The stream's length is the span of its decoding times
            # plus that duration: set so that it runs from the first frame's time to `end`
            p = self.pending
            if None not in (p.dts, self.first_dts, self.first_pts):
                duration = (end - self.first_pts) - (p.dts - self.first_dts)
                if duration > 0:
                    p.duration = duration
            self.out.mux(self.pending)
            self.pending = None
        if self.encoder is not None:
            for p in self.encoder.encode(None):
                self.out.mux(p)
        self.out.close()
