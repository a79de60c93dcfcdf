"""Synthetic clips for tests and `facemend bench`: a photo panned, zoomed and re-compressed.

Frame i shows a window of the photo that drifts and slowly zooms in (`motion` = 0 holds it
still), each frame JPEG re-compressed at a quality that varies from frame to frame (as footage
that went through several encoders), then encoded as video; the sound is a sine tone.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

# container suffix -> (video codec, sound codec) the clip is written with
CODECS = {".mp4": ("libx264", "aac"), ".mov": ("libx264", "aac"), ".mkv": ("libx264", "aac"),
          ".webm": ("libvpx-vp9", "libopus"), ".avi": ("mpeg4", "pcm_s16le")}


def clip_frames(photo: np.ndarray, frames: int, size: tuple[int, int], motion: float = 1.0,
                recompress: bool = True, seed: int = 0) -> list[np.ndarray]:
    """`frames` (h, w, 3) uint8 views of an RGB photo at size (w, h), panned and zoomed."""
    import cv2

    rng = np.random.default_rng(seed)
    ph, pw = photo.shape[:2]
    w, h = size
    aspect = w / h
    base_w = min(pw, ph * aspect) * 0.9
    out = []
    for i in range(frames):
        p = i / max(frames - 1, 1) * motion
        cw = base_w * (1.0 - 0.1 * p)  # zoom in by up to 10 %
        ch = cw / aspect
        cx = pw / 2 + 0.04 * pw * np.sin(2 * np.pi * p)  # drift left-right and down
        cy = ph / 2 + 0.03 * ph * p
        m = np.array([[w / cw, 0, w / 2 - cx * w / cw], [0, h / ch, h / 2 - cy * h / ch]])
        img = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_AREA,
                             borderMode=cv2.BORDER_REFLECT)
        if recompress:
            q = int(rng.integers(55, 90))
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        out.append(np.ascontiguousarray(img))
    return out


def write_clip(path: str | Path, frames: list[np.ndarray], fps: int = 24, *,
               tone_hz: float | None = 440.0, sample_rate: int = 16000,
               pix_fmt: str = "yuv420p", rotation: int = 0, codec: str | None = None,
               times: list[Fraction] | None = None) -> Path:
    """Encode RGB frames (and a sine tone) into `path`; the container follows its suffix.

    rotation: display rotation (counter-clockwise degrees) stored in the stream, the pixels
    being stored rotated the other way, so that a player shows the frames as given.
    times: each frame's time in seconds (a variable frame rate; the last frame lasts as long as
    the gap before it), stored in 1/90000 s where the container allows (Matroska keeps ms) and
    in display order (no B-frames), so that the file states its frame times and duration
    plainly; default: frame i at i / fps.
    """
    import av

    path = Path(path)
    vcodec, acodec = CODECS[path.suffix.lower()]
    vcodec = codec or vcodec
    out = av.open(str(path), "w")
    if rotation:
        frames = [np.ascontiguousarray(np.rot90(f, -(rotation // 90))) for f in frames]
    h, w = frames[0].shape[:2]
    tb = Fraction(1, fps)
    v = out.add_stream(vcodec, rate=fps, options={"bf": "0"} if times else None)
    if times:
        tb = Fraction(1, 90000)
        v.time_base = v.codec_context.time_base = tb
    v.width, v.height, v.pix_fmt = w, h, pix_fmt
    if rotation:
        v.set_display_rotation(rotation)
    a = None
    if tone_hz is not None:
        a = out.add_stream(acodec, rate=48000 if acodec == "libopus" else sample_rate,
                           layout="mono")
    pts = [round(t / tb) for t in times] if times else list(range(len(frames)))
    last = pts[-1] + (pts[-1] - pts[-2] if len(pts) > 1 else round(1 / (fps * tb)))

    def mux_video(packets: list) -> None:
        for p in packets:
            if times and p.pts == pts[-1]:
                p.duration = last - pts[-1]  # shown until the end of the clip
            out.mux(p)

    for i, f in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format=pix_fmt)
        frame.pts, frame.time_base = pts[i], tb
        mux_video(v.encode(frame))
    if a is not None:
        rate = a.codec_context.sample_rate
        n = round(last * tb * rate)
        tone = 0.3 * np.sin(2 * np.pi * tone_hz * np.arange(n) / rate)
        fmt = a.codec_context.format.name
        chunk = a.codec_context.frame_size or 1024
        for start in range(0, n, chunk):
            s = tone[start : start + chunk]
            data = (s * 32767).astype(np.int16) if fmt.startswith("s16") else s.astype(np.float32)
            af = av.AudioFrame.from_ndarray(data[None], format=fmt, layout="mono")
            af.sample_rate, af.pts = rate, start
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    mux_video(v.encode(None))
    out.close()
    return path
