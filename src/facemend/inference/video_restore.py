"""Restore the faces of a clip: decode -> track -> restore in batches -> encode, as it goes.

Each face is followed through the clip (`tracking.FaceTracker`): it is restored from its
smoothed landmarks, and with the same noise tensors in every frame (drawn once per track from
its seed), so a still face restores to the same face frame after frame; its colour is matched
to a running average of its input's colour statistics along the track (`TrackColour`), not to
each frame's own, so re-compression and noise in the input do not make it pulse.
`temporal=False` is frame-by-frame restoration for comparison: detection on every frame,
landmarks as fitted, fresh noise and colour statistics for every face in every frame. Frames
are decoded, restored `batch_frames` at a time and encoded at once, and the sound is copied as
its packets come, so memory does not depend on the clip's length. The output is written to a
temporary file in the output folder and renamed when complete; on Ctrl-C the frames so far are
finished into a playable `NAME.partial.mp4` and `VideoInterrupted` says where.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemend.inference.detect import DetectOptions
from facemend.inference.paste import ColourStats
from facemend.inference.restore import restore_photo
from facemend.inference.tracking import FaceTracker, Track, TrackOptions
from facemend.inference.video import Audio, Frame, VideoReader, VideoWriter

CLOCK = Fraction(1, 90000)  # output time base: 1/24, 1/25, 1/30, 1001/30000 s are whole ticks


@dataclass(frozen=True)
class VideoOptions:
    """How a clip is restored (besides the FaceRestorer's own settings)."""

    upscale: float = 1.0
    fps: float | None = None  # output frame rate (frames re-timed evenly); None: the input's
    batch_frames: int = 8  # frames decoded before they are restored and encoded
    temporal: bool = True  # False: frame-by-frame restoration (no tracking or shared noise)
    track: TrackOptions = TrackOptions()
    upsample: int | None = None  # detector upsampling (default: 2 below 800 px, else 1)
    crf: int = 18  # H.264 quality (lower is better)
    record_landmarks: bool = False  # keep each frame's smoothed landmarks (flicker measure)
    seed: int = 0  # track i draws its noise from seed + i
    colour_rate: float = 0.05  # weight of each frame in a track's running colour statistics


@dataclass
class VideoResult:
    """What `restore_video` did."""

    output: Path
    frames: int
    fps: Fraction
    size: tuple[int, int]  # (width, height) of the output
    tracks: int  # faces followed (distinct track ids)
    audio: str | None  # the sound's codec, None without sound
    notes: list[str] = field(default_factory=list)
    landmarks: list[dict[int, np.ndarray]] = field(default_factory=list)  # per frame, by track


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C during a clip: `partial` is the playable file of the frames restored so far."""

    def __init__(self, partial: Path, frames: int) -> None:
        super().__init__(f"interrupted after {frames} frames; partial video in {partial}")
        self.partial, self.frames = partial, frames


class TrackNoise:
    """Restorer whose noise for each face comes from its track: the same tensors every frame."""

    def __init__(self, G: torch.nn.Module, noise_scale: float, device: torch.device) -> None:
        self.G, self.noise_scale, self.device = G, noise_scale, device
        self.cache: dict[int, list[torch.Tensor]] = {}
        self.queue: list[Track] = []
        self.channels_last = next(G.parameters()).is_contiguous(memory_format=torch.channels_last)

    def noise(self, tr: Track) -> list[torch.Tensor]:
        if tr.seed not in self.cache:
            gen = torch.Generator(device=self.device).manual_seed(tr.seed)
            self.cache[tr.seed] = self.G.make_noise(1, generator=gen, device=self.device)
        return self.cache[tr.seed]

    def forget(self, live: list[Track]) -> None:
        """Drop the noise of tracks that ended."""
        keep = {tr.seed for tr in live}
        self.cache = {s: n for s, n in self.cache.items() if s in keep}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        batch, self.queue = self.queue[: len(x)], self.queue[len(x):]
        assert len(batch) == len(x), "one queued track per face"
        per_face = [self.noise(tr) for tr in batch]
        noise = [torch.cat(site) for site in zip(*per_face, strict=True)]
        x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self.G(x, noise=noise or None, noise_scale=self.noise_scale)
        return y.float().contiguous()


class TrackColour:
    """Colour statistics of each track: a running average over its frames (weight `rate`)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.stats: dict[int, ColourStats] = {}
        self.tracks: list[Track] = []

    def start(self, tracks: list[Track]) -> None:
        """The frame's faces, in the order they are given to `restore_photo`."""
        self.tracks = list(tracks)
        live = {tr.id for tr in tracks}
        self.stats = {k: v for k, v in self.stats.items() if k in live}

    def __call__(self, index: int, stats: ColourStats) -> ColourStats:
        tid = self.tracks[index].id
        if tid not in self.stats:
            self.stats[tid] = stats
        else:
            r = self.rate
            self.stats[tid] = tuple((1 - r) * old + r * new  # type: ignore[assignment]
                                    for old, new in zip(self.stats[tid], stats, strict=True))
        return self.stats[tid]


def restore_video(
    restorer: Any,
    src: str | Path,
    dst: str | Path,
    options: VideoOptions = VideoOptions(),
    *,
    progress: bool = True,
    on_frame: Callable[[int], None] | None = None,
) -> VideoResult:
    """Restore the faces of clip `src` into the MP4 `dst` with a `FaceRestorer`.

    Frame rate, timestamps (also where they are unevenly spaced) and size are the input's (size
    x upscale, rounded up to even; fps re-times the frames evenly), and the last frame ends
    where the input says its last frame ends (else one gap after it); the sound is copied.
    `on_frame(i)` is called after frame i is encoded. Raises VideoError for a clip that cannot
    be read, VideoInterrupted on Ctrl-C.
    """
    from tqdm import tqdm

    dst = Path(dst)
    reader = VideoReader(src)
    fps = Fraction(options.fps).limit_denominator(1001) if options.fps else reader.fps
    tick = float(reader.time_base)  # how finely the input states its frame times
    up = options.upsample if options.upsample is not None else (
        2 if max(reader.width, reader.height) < 800 else 1)
    s = restorer.settings
    detect = DetectOptions(detector=s["detector"], upsample=up,
                           landmarks68=bool(s["face_shaped_mask"]),
                           smallest_face=s["smallest_face"])
    track = options.track if options.temporal else TrackOptions(detect_every=1, smooth=False)
    tracker = FaceTracker(detect, track, seed=options.seed)
    seeded = (TrackNoise(restorer.G, restorer.noise_scale, restorer.device)
              if options.temporal and hasattr(restorer, "G") else None)
    colour = TrackColour(options.colour_rate) if options.temporal else None
    result = VideoResult(dst, 0, fps, (0, 0), 0,
                         reader.audio.codec_context.name if reader.audio else None)
    bar = tqdm(total=reader.frames or None, unit="frame", disable=not progress, leave=False)
    batch: list[Frame] = []
    early_audio: list[Any] = []  # sound packets demuxed before the first frame is restored
    out: dict[str, Any] = {}  # the writer and its temporary file, made at the first frame

    def open_writer(rgb: np.ndarray) -> VideoWriter:
        h, w = rgb.shape[:2]
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}.", suffix=".mp4")
        os.close(fd)
        out["tmp"] = tmp
        writer = VideoWriter(tmp, w, h, fps, CLOCK, reader.audio, options.crf)
        result.size = (writer.width, writer.height)
        if writer.audio_note:
            result.notes.append(writer.audio_note)
        if (w, h) != result.size:
            result.notes.append(f"{w}x{h} has an odd side; written as {writer.width}x"
                                f"{writer.height} (edge pixels repeated) as H.264 needs even "
                                "sides")
        for packet in early_audio:
            writer.copy_audio(packet)
        early_audio.clear()
        return writer

    def flush() -> None:
        for f in batch:
            rgb = _restore_frame(f, restorer, tracker, seeded, colour, options, result)
            if "writer" not in out:
                out["writer"] = open_writer(rgb)
            t = f.index / fps if options.fps else _on_grid(f.time, fps, tick)
            out["writer"].write(rgb, round(t * CLOCK.denominator))
            out["last"] = t
            result.frames += 1
            bar.update(1)
            if on_frame is not None:
                on_frame(f.index)
        batch.clear()

    try:
        for item in reader.items():
            if isinstance(item, Audio):
                if "writer" in out:
                    out["writer"].copy_audio(item.packet)
                else:
                    early_audio.append(item.packet)
                continue
            batch.append(item)
            if len(batch) >= options.batch_frames:
                flush()
        flush()
    except KeyboardInterrupt:
        bar.close()
        partial = dst.with_name(f"{dst.stem}.partial.mp4")
        _finish(out, reader, partial if result.frames else None)
        raise VideoInterrupted(partial, result.frames) from None
    except BaseException:
        bar.close()
        _finish(out, reader, None)
        raise
    bar.close()
    result.notes = list(dict.fromkeys(result.notes + reader.notes))
    end = result.frames / fps if options.fps else reader.end_after(out["last"])
    _finish(out, reader, dst, None if end is None else round(end * CLOCK.denominator))
    result.tracks = tracker.next_id
    return result


def _on_grid(t: float, fps: Fraction, tick: float) -> float:
    """A frame time put back on the 1/fps grid where the input's coarse time base moved it
    off (e.g. Matroska's milliseconds); a time truly off the grid (variable rate) is kept."""
    k = round(t * fps)
    on = float(k / fps)
    return on if abs(t - on) <= max(tick, 1e-6) else t


def _finish(out: dict[str, Any], reader: VideoReader, keep: Path | None,
            end: int | None = None) -> None:
    """Close both files (the output's last frame ending at `end`, in CLOCK ticks; default:
    one frame gap after it); rename the temporary output to `keep`, or delete it."""
    reader.close()
    if "tmp" not in out:
        return
    tmp, writer = out["tmp"], out.get("writer")
    try:
        if writer is None:
            raise OSError("no writer")
        writer.close(end)
    except Exception:  # noqa: BLE001 - a half-written file is deleted below anyway
        keep = None
    if keep is None:
        Path(tmp).unlink(missing_ok=True)
    else:
        os.chmod(tmp, 0o644)
        os.replace(tmp, keep)


def _restore_frame(f: Frame, restorer: Any, tracker: FaceTracker, seeded: TrackNoise | None,
                   colour: TrackColour | None, options: VideoOptions,
                   result: VideoResult) -> np.ndarray:
    """One frame: faces tracked into it, restored with their tracks' noise and colour."""
    tracks = tracker.update(f.rgb, f.time)
    if options.record_landmarks:
        result.landmarks.append({tr.id: tr.smooth5.copy() for tr in tracks})
    call = restorer.model
    if seeded is not None:
        seeded.forget(tracks)
        seeded.queue = list(tracks)
        call = seeded
    if colour is not None:
        colour.start(tracks)
    s = restorer.settings
    res = restore_photo(
        f.rgb, call, restorer.size, given_faces=[tr.face() for tr in tracks],
        upscale=options.upscale, batch_size=restorer.batch_size,
        identity_fn=restorer.identity_fn if s["identity_guard"] is not None else None,
        identity_guard=s["identity_guard"], colour_match=s["colour_match"],
        detail=s["detail"], face_shaped_mask=s["face_shaped_mask"], colour_target=colour,
    )
    return res.images[0]
