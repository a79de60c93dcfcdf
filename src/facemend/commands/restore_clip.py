"""`facemend restore` on a clip: OUT/restored_videos/NAME.mp4, faces tracked, sound copied."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

VIDEO_SUBDIR = "restored_videos"


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The options that only clips use."""
    p.add_argument("--save-video-fps", "--save_video_fps", type=float, default=None,
                   metavar="FPS", help="frame rate of restored clips (default: the input's, "
                   "with its timestamps)")
    p.add_argument("--detect-every", type=int, default=5, metavar="K",
                   help="clips: run the face detector on every K-th frame and follow the faces "
                   "in between (default 5)")
    p.add_argument("--frame-by-frame", action="store_true",
                   help="clips: restore each frame on its own (no tracking, smoothing or shared "
                   "noise; flickers)")


def clip_entry(restorer: Any, path: Path, out: Path, stem: str, args: argparse.Namespace,
               protected: set[Path]) -> dict:
    """`restore_clip` as a report entry: status ok, or error with its one line said on stderr.

    Ctrl-C says where the playable partial clip is, then goes on as KeyboardInterrupt.
    """
    from facemend.commands.restore import _error_line, _say
    from facemend.inference.video_restore import VideoInterrupted

    entry: dict = {"file": str(path), "status": "ok"}
    t0 = time.perf_counter()
    try:
        entry.update(restore_clip(restorer, path, out, stem, args, protected))
    except VideoInterrupted as e:
        _say(f"{path}: {e}" if e.frames else f"{path}: interrupted before the first frame")
        raise KeyboardInterrupt from None
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
        text = str(e) or type(e).__name__
        if not isinstance(e, ValueError | OSError):  # VideoError is a ValueError
            text = f"internal error ({type(e).__name__}: {text})"
        entry.update(status="error", error=_error_line(path, text))
        _say(entry["error"])
    entry["time_s"] = round(time.perf_counter() - t0, 4)
    return entry


def restore_clip(restorer: Any, path: Path, out: Path, stem: str, args: argparse.Namespace,
                 protected: set[Path]) -> dict:
    """Restore one clip into OUT/restored_videos/STEM.mp4; the report entry's fields."""
    from facemend.inference.files import check_not_input
    from facemend.inference.tracking import TrackOptions
    from facemend.inference.video_restore import VideoOptions, restore_video

    if args.save_video_fps is not None and not args.save_video_fps > 0:
        raise ValueError(f"--save-video-fps {args.save_video_fps}: must be > 0")
    if args.detect_every < 1:
        raise ValueError(f"--detect-every {args.detect_every}: must be >= 1")
    dst = out / VIDEO_SUBDIR / f"{stem}.mp4"
    check_not_input(dst, protected)
    options = VideoOptions(upscale=args.upscale, fps=args.save_video_fps,
                           temporal=not args.frame_by_frame, upsample=args.upsample,
                           track=TrackOptions(detect_every=args.detect_every), seed=args.seed)
    res = restore_video(restorer, path, dst, options, progress=not args.no_progress)
    if getattr(args, "only_center_face", False) or getattr(args, "face_index", None) is not None:
        res.notes.insert(0, "--only-center-face and --face-index apply to photos; every face of "
                            "a clip is restored")
    for note in res.notes:
        print(f"note: {path}: {note}", file=sys.stderr)
    entry: dict = {"outputs": [str(res.output)], "frames": res.frames,
                   "fps": round(float(res.fps), 4), "size": list(res.size), "faces": [],
                   "tracks": res.tracks, "audio": res.audio}
    if res.notes:
        entry["warnings"] = res.notes
    if not res.tracks:
        entry["note"] = "no face found; the clip was only re-encoded (and upscaled)"
    return entry
