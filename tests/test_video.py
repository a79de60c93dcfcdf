"""Clips: `facemend restore` on video, sound copied, frames timed, faces steady, bad clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av")

from conftest import tiny_generator  # noqa: E402
from facemend.bench.clips import clip_frames, write_clip  # noqa: E402
from facemend.cli import main  # noqa: E402
from facemend.inference.api import FaceRestorer  # noqa: E402
from facemend.inference.flicker import flicker, frames_of  # noqa: E402
from facemend.inference.video import Audio, Frame, VideoReader  # noqa: E402
from facemend.inference.video_restore import (  # noqa: E402
    VideoInterrupted,
    VideoOptions,
    restore_video,
)
from facemend.models.generator import Generator  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "photos" / "john2.jpg"  # one face
SIZE = (160, 120)


def noisy_generator() -> Generator:
    """The tests' tiny random model with its noise on (strength 0.5)."""
    return tiny_generator(0.5)


@pytest.fixture(scope="module")
def weights(noisy_weights: Path) -> Path:
    return noisy_weights


@pytest.fixture(scope="module")
def restorer() -> FaceRestorer:
    return FaceRestorer(model=noisy_generator(), identity=False)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(PHOTO).convert("RGB"))


def probe(path: Path) -> tuple[int, float, float, list[bytes], str | None, tuple[int, int]]:
    """(frames, fps, duration s, sound packets' bytes, sound codec, (w, h) of the frames)."""
    r = VideoReader(path)
    items = list(r.items())
    frames = [i for i in items if isinstance(i, Frame)]
    sound = [bytes(i.packet) for i in items if isinstance(i, Audio)]
    codec = r.audio.codec_context.name if r.audio else None
    duration = r.container.duration / 1e6
    fps = float(r.fps)
    r.close()
    h, w = frames[0].rgb.shape[:2]
    return len(frames), fps, duration, sound, codec, (w, h)


def restore(*args: str) -> int:
    return main(["restore", *args, "--no-progress", "--threads", "1", "--no-identity"])


def test_folder_of_photo_clip_and_corrupt_clip(weights: Path, photo: np.ndarray, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PHOTO, src / "face.jpg")
    clip = write_clip(src / "clip.mp4", clip_frames(photo, 24, SIZE))
    (src / "broken.mov").write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    rc = restore(str(src), "-o", str(tmp_path / "out"), "--weights", str(weights))
    err = capsys.readouterr().err
    assert rc == 1
    errors = [ln for ln in err.splitlines() if ln.startswith(str(src))]
    assert len(errors) == 1 and "broken.mov" in errors[0], err
    assert (tmp_path / "out" / "restored_imgs" / "face.jpg").is_file()
    out = tmp_path / "out" / "restored_videos" / "clip.mp4"
    n, fps, duration, sound, codec, size = probe(out)
    n0, fps0, duration0, sound0, codec0, size0 = probe(clip)
    assert (n, fps, size) == (24, 24.0, SIZE) == (n0, fps0, size0)
    assert abs(duration - duration0) < 0.05
    assert codec == codec0 == "aac" and sound == sound0  # the sound's packets copied unchanged
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.mp4"]  # no temp file left
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".avi"])
def test_containers_upscale_and_fps(weights: Path, photo: np.ndarray, tmp_path: Path,
                                    suffix: str) -> None:
    clip = write_clip(tmp_path / f"c{suffix}", clip_frames(photo, 12, SIZE), fps=24)
    out = tmp_path / "out"
    assert restore(str(clip), "-o", str(out), "--weights", str(weights), "-s", "2",
                   "--save_video_fps", "12") == 0
    n, fps, duration, sound, codec, size = probe(out / "restored_videos" / "c.mp4")
    assert (n, fps, size) == (12, 12.0, (320, 240))
    assert abs(duration - 1.0) < 0.1  # 12 frames at 12 fps
    assert codec in ("aac", "opus") and sound


@pytest.mark.parametrize("option", [["--only-center-face"], ["--face-index", "0"]])
def test_face_choice_options_are_said_to_be_for_photos(weights: Path, photo: np.ndarray,
                                                       tmp_path: Path, option: list[str],
                                                       capsys: pytest.CaptureFixture) -> None:
    clip = write_clip(tmp_path / "c.mp4", clip_frames(photo, 4, SIZE))
    assert restore(str(clip), "-o", str(tmp_path / "out"), "--weights", str(weights),
                   *option) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "--face-index" in ln]
    assert len(notes) == 1 and notes[0].startswith(f"note: {clip}: ") and "photos" in notes[0]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["files"][0]["tracks"] == 1


def test_still_clip_is_steady_and_steadier_than_frame_by_frame(restorer: FaceRestorer,
                                                               photo: np.ndarray,
                                                               tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "still.mp4", clip_frames(photo, 16, SIZE, motion=0.0))
    tracked = restore_video(restorer, clip, tmp_path / "a.mp4",
                            VideoOptions(record_landmarks=True), progress=False)
    framewise = restore_video(restorer, clip, tmp_path / "b.mp4", VideoOptions(temporal=False),
                              progress=False)
    lms = tracked.landmarks
    assert tracked.tracks == 1 and all(list(f) == [0] for f in lms)
    assert all(np.array_equal(f[0], lms[0][0]) for f in lms)  # a still face is held still
    f_in = flicker(frames_of(clip), lms)
    f_tracked = flicker(frames_of(tracked.output), lms)
    f_framewise = flicker(frames_of(framewise.output), lms)
    assert f_tracked <= f_in, (f_tracked, f_in)
    assert f_framewise > 5 * f_tracked, (f_framewise, f_tracked)


def test_colour_follows_the_track_not_each_frame(photo: np.ndarray, tmp_path: Path) -> None:
    # the input's brightness pulses by +-6 levels frame to frame; a model that returns its input
    # matched to each frame's own colour statistics pulses with it, matched to the track's
    # running average it does not
    frames = [np.clip(f.astype(np.int16) + (6 if i % 2 else -6), 0, 255).astype(np.uint8)
              for i, f in enumerate(clip_frames(photo, 12, SIZE, motion=0.0))]
    clip = write_clip(tmp_path / "pulse.mp4", frames)
    settings = {"detector": "hog", "smallest_face": 1 / 20, "colour_match": True, "detail": False,
                "face_shaped_mask": True, "identity_guard": None}
    plain = SimpleNamespace(model=lambda x: x, size=64, batch_size=4, identity_fn=None,
                            settings=settings)
    tracked = restore_video(plain, clip, tmp_path / "a.mp4", VideoOptions(record_landmarks=True),
                            progress=False)
    per_frame = restore_video(plain, clip, tmp_path / "b.mp4", VideoOptions(colour_rate=1.0),
                              progress=False)
    lms = tracked.landmarks
    f_in, f_tracked, f_per_frame = (flicker(frames_of(p), lms)
                                    for p in (clip, tracked.output, per_frame.output))
    assert f_per_frame > 0.5 * f_in, (f_per_frame, f_in)
    assert f_tracked < 0.5 * f_per_frame, (f_tracked, f_per_frame)


def test_ctrl_c_leaves_a_playable_partial_clip(restorer: FaceRestorer, photo: np.ndarray,
                                               tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", clip_frames(photo, 24, SIZE))

    def stop(i: int) -> None:
        if i == 9:
            raise KeyboardInterrupt

    with pytest.raises(VideoInterrupted) as e:
        restore_video(restorer, clip, tmp_path / "out" / "c.mp4",
                      VideoOptions(batch_frames=4), progress=False, on_frame=stop)
    assert e.value.frames == 10 and "partial video" in str(e.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c.partial.mp4"]
    assert probe(e.value.partial)[0] == 10


def test_bad_and_unusual_clips(weights: Path, photo: np.ndarray, tmp_path: Path,
                               capsys: pytest.CaptureFixture) -> None:
    import av

    src = tmp_path / "in"
    src.mkdir()
    frames = clip_frames(photo, 8, SIZE)
    (src / "empty.mp4").write_bytes(b"")
    (src / "text.mkv").write_text("not a video\n")
    sound_only = av.open(str(src / "sound.mp4"), "w")  # a valid MP4 holding sound only
    a = sound_only.add_stream("aac", rate=16000, layout="mono")
    af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    af.sample_rate, af.pts = 16000, 0
    for p in [*a.encode(af), *a.encode(None)]:
        sound_only.mux(p)
    sound_only.close()
    write_clip(src / "silent.mp4", frames, tone_hz=None)
    odd = [np.ascontiguousarray(np.pad(f, ((0, 1), (0, 1), (0, 0)), mode="edge")[:, :, :])
           for f in frames]
    write_clip(src / "odd.mkv", odd, codec="ffv1", pix_fmt="yuv444p")  # 161x121, 4:4:4
    portrait = [np.ascontiguousarray(np.rot90(f)) for f in frames]  # shown 120x160
    write_clip(src / "rotated.mp4", portrait, rotation=90)
    write_clip(src / "deep.mp4", frames, pix_fmt="yuv420p10le")
    rc = restore(str(src), "-o", str(tmp_path / "out"), "--weights", str(weights))
    err = capsys.readouterr().err
    assert rc == 1
    lines = {Path(ln.split(":")[0]).name: ln for ln in err.splitlines()
             if ln.startswith(str(src))}
    assert set(lines) == {"empty.mp4", "text.mkv", "sound.mp4"}, err
    assert "no video stream" in lines["sound.mp4"]
    out = tmp_path / "out" / "restored_videos"
    assert probe(out / "silent.mp4")[3:5] == ([], None)
    assert probe(out / "odd.mp4")[5] == (162, 122)  # H.264 4:2:0 needs even sides
    assert "odd side" in err
    rotated = probe(out / "rotated.mp4")
    assert rotated[5] == (120, 160)  # upright, as the input is shown
    assert probe(out / "deep.mp4")[0] == 8
    upright = next(iter(frames_of(out / "rotated.mp4")))
    assert np.abs(upright.astype(int) - portrait[0]).mean() < 20  # not turned the wrong way
