"""Faults: SIGKILL mid-save and mid-run, NaN losses, hostile pickles, foreign checkpoints, typos."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import facemend.training.phases as phases
from facemend.cli import main
from facemend.config import ModelConfig, RunConfig, load_config
from facemend.io import load_torch_state
from facemend.metrics.fid import INCEPTION_FILE, load_inception
from facemend.metrics.lpips import BACKBONE_FILES, load_lpips
from facemend.models.generator import Generator
from facemend.models.pretrained import WeightsError, from_pretrained, save_pretrained
from facemend.training.checkpoint import (
    CheckpointError,
    TrainingState,
    load_checkpoint,
    read_header,
    save_checkpoint,
)
from facemend.training.loop import TrainingDivergedError, train
from facemend.vgg19 import VGG19WeightsError, load_vgg19

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny-32.yaml"
FAST = ["train.face_perceptual_weight=0", "train.identity_weight=0", "train.log_every=1",
        "train.sample_every=1000"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}

SAVER = """
import sys, torch
from facemend.training.checkpoint import TrainingState, save_checkpoint
m = torch.nn.Linear(2048, 4096)  # 32 MB of weights: a save takes a while
for i in range(1, 10**6):
    with torch.no_grad():
        m.weight.fill_(i)
        m.bias.fill_(i)
    print(f"saving {i}", flush=True)
    save_checkpoint(sys.argv[1], TrainingState(i, i, {"G": m}, {}, {}))
"""


def test_sigkill_during_checkpoint_save_keeps_the_previous_one(tmp_path: Path) -> None:
    ckpt = tmp_path / "latest.safetensors"
    rng, last = random.Random(0), 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(ckpt)], env=ENV, text=True,
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        target = f"saving {rng.randint(2, 3)}"
        while proc.stdout.readline().strip() != target:
            assert proc.poll() is None
        time.sleep(rng.uniform(0.0, 0.05))  # somewhere inside that save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        m = torch.nn.Linear(2048, 4096)
        state = TrainingState(0, 0, {"G": m}, {}, {})
        load_checkpoint(ckpt, state)  # loads, every time
        assert state.step >= 1 and (m.weight == state.step).all() and (m.bias == state.step).all()
        last = state.step
    assert last >= 1
    save_checkpoint(ckpt, TrainingState(99, 99, {"G": torch.nn.Linear(2, 2)}, {}, {}))
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.name]  # stale temp files removed


def test_training_killed_midrun_resumes_to_the_same_result(faces: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = [*FAST, "train.steps=10", "train.ckpt_every=2"]
    cmd = [sys.executable, "-m", "facemend", "train", "--config", str(TINY), "--data",
           str(faces), "--out", str(out), "--no-progress", "--threads", "1", "--device", "cpu",
           *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoints" / "latest.safetensors"
    deadline = time.monotonic() + 120
    while not (ckpt.is_file() and read_header(ckpt)["step"] >= 4):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_header(ckpt)["step"]
    assert 4 <= killed_at < 10 and not (out / "final").exists()
    done = subprocess.run([*cmd, "--resume"], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {ckpt} at step {killed_at}" in done.stderr
    steps = [r["step"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
             if "loss_l1" in r]
    assert steps == list(range(1, 11))  # each step logged once
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (--threads 1): bit-identical float reductions
    try:
        straight = train(load_config(RunConfig, TINY, sets), [str(faces)], tmp_path / "straight",
                         progress=False)
    finally:
        torch.set_num_threads(threads)
    a, b = load_file(straight / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def nan_l1_from(steps: set[int] | int):
    """An l1_loss that returns NaN at the given call numbers (a set), or from call N on."""
    calls = {"n": 0}
    real = phases.l1_loss

    def l1(fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, calls["n"] = calls["n"], calls["n"] + 1
        bad = n in steps if isinstance(steps, set) else n >= steps
        return real(fake, y) * float("nan") if bad else real(fake, y)

    return l1


def test_transient_nan_steps_are_skipped_without_trace(faces: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phases, "l1_loss", nan_l1_from({2, 3}))
    cfg = load_config(RunConfig, TINY, [*FAST, "train.steps=6", "train.ckpt_every=6"])
    final = train(cfg, [str(faces)], tmp_path / "run", progress=False)
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "skipped" in r] == [2, 3]
    G = from_pretrained(final)
    assert all(torch.isfinite(t).all() for t in G.state_dict().values())
    header = read_header(tmp_path / "run" / "checkpoints" / "latest.safetensors")
    assert header["step"] == 6 and header["extra"]["bad_steps"] == 0


def test_repeated_nan_stops_and_keeps_the_last_good_checkpoint(
        faces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phases, "l1_loss", nan_l1_from(3))
    cfg = load_config(RunConfig, TINY, [*FAST, "train.steps=20", "train.ckpt_every=1",
                                        "train.max_bad_steps=3"])
    with pytest.raises(TrainingDivergedError, match="3 non-finite losses in a row") as e:
        train(cfg, [str(faces)], tmp_path / "run", progress=False)
    assert "is from before them" in str(e.value) and "last good" not in str(e.value)
    ckpt = tmp_path / "run" / "checkpoints" / "latest.safetensors"
    state = TrainingState(0, 0, {"G": Generator(cfg.model)}, {}, {})
    load_checkpoint(ckpt, state)
    assert state.step == 3
    assert all(torch.isfinite(t).all() for t in state.modules["G"].state_dict().values())


def test_absurd_learning_rate_diverges_cleanly(faces: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    sets = [*FAST, "train.steps=20", "train.ckpt_every=1", "train.max_bad_steps=2",
            "train.lr_g=1e30", "train.lr_d=1e30"]
    rc = main(["train", "--config", str(TINY), "--data", str(faces), "--out", str(out),
               "--no-progress", "--device", "cpu", *[a for s in sets for a in ("--set", s)]])
    assert rc == 3
    printed = capsys.readouterr()
    assert "non-finite losses in a row" in printed.err and "step skipped" in printed.err
    ckpt = out / "checkpoints" / "latest.safetensors"
    assert read_header(ckpt)["step"] >= 1  # the last checkpoint written is still loadable
    assert all(torch.isfinite(t).all() for t in load_file(ckpt).values())


class Evil:
    """Unpickling this calls open(marker, 'w'): the file appearing means code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickles_with_code_are_refused_by_every_loader(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = {"features.0.weight": Evil(marker)}
    zip_file, raw_file = tmp_path / "evil_zip.pth", tmp_path / "evil_raw.pth"
    torch.save(evil, zip_file)
    raw_file.write_bytes(pickle.dumps(evil, protocol=2))
    for f in (zip_file, raw_file):
        with pytest.raises(ValueError, match="never pickled code"):
            load_torch_state(f)
        with pytest.raises(VGG19WeightsError):
            load_vgg19(f)
        d = tmp_path / f"root_{f.stem}"
        d.mkdir()
        shutil.copy(f, d / BACKBONE_FILES["alex"])
        shutil.copy(f, d / "alex.pth")
        with pytest.raises(ValueError, match="not a plain torch state dict"):
            load_lpips("alex", root=d)
        shutil.copy(f, d / INCEPTION_FILE)
        with pytest.raises(ValueError, match="not a plain torch state dict"):
            load_inception(d)
        with pytest.raises(CheckpointError, match="pickles are never loaded"):
            load_checkpoint(f, TrainingState(0, 0, {"G": torch.nn.Linear(2, 2)}, {}, {}))
        w = tmp_path / f"weights_{f.stem}"
        save_pretrained(Generator(ModelConfig(resolution=32, channel_base=64, max_channels=8,
                                              latent_dim=8, num_skips=1, codebook_size=4)), w)
        shutil.copy(f, w / "model.safetensors")
        with pytest.raises(WeightsError, match="pickles are never loaded"):
            from_pretrained(w)
    assert not marker.exists()


def test_no_unsafe_loading_in_the_package() -> None:
    src = (REPO / "src" / "facemend").rglob("*.py")
    for path in src:
        text = path.read_text(encoding="utf-8")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert not re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", text,
                             re.M), path
        assert "allow_pickle=True" not in text and "yaml.load(" not in text, path


def test_truncated_and_foreign_checkpoints(tmp_path: Path) -> None:
    def state() -> TrainingState:
        return TrainingState(0, 0, {"G": torch.nn.Linear(64, 64)}, {}, {})

    good = tmp_path / "good.safetensors"
    save_checkpoint(good, state())
    cases = {
        "truncated": (good.read_bytes()[: good.stat().st_size // 2], "truncated, corrupt"),
        "foreign": (None, "without a facemend header"),
        "random": (random.Random(0).randbytes(5000), "truncated, corrupt or not a safetensors"),
        "text": (b"step: 3\n", "looks like a text file"),
        "empty": (b"", "truncated, corrupt"),
    }
    for name, (data, msg) in cases.items():
        p = tmp_path / f"{name}.safetensors"
        if data is None:
            save_file({"weight": torch.zeros(3)}, p)
        else:
            p.write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(p, state())
        assert str(e.value).startswith(f"{p}: ") and msg in str(e.value), str(e.value)
        assert "\n" not in str(e.value)


def test_misspelled_config_key_fails_before_any_work(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_size: 4\n  stpes: 10\n")
    out = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "no-such-data"), "--out", str(out)]
    assert main([*args, "--config", str(bad)]) == 2
    assert "unknown config key 'train.stpes'" in capsys.readouterr().err
    assert main([*args, "--config", str(TINY), "--set", "train.lr_gg=1"]) == 2
    assert "train.lr_gg" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("setting", ["train.batch_size=-4", "train.batch_size=0",
                                     "train.steps=0", "train.steps=-5"])
def test_non_positive_batch_or_steps_is_one_line(tmp_path, capsys, setting):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--config", str(TINY),
                 "--set", setting]) == 2
    captured = capsys.readouterr()
    key, value = setting.split("=")
    err = captured.err.strip()
    assert err.startswith("error: ") and err.endswith(f"{key}={value}: must be >= 1"), err
    assert "\n" not in err
    assert not out.exists()  # no untrained final/ left behind


def test_empty_config_file_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                 "--config", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert "empty config file" in err and str(empty) in err and "\n" not in err


def test_data_with_only_bad_images_is_one_line(tmp_path, capsys, recwarn):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"face{i}.png").write_bytes(b"not a png " * i)
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), "--out", str(out), "--config", str(TINY),
                 "--no-progress", *[a for f in FAST for a in ("--set", f)]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: no readable image among the 3 files")
    assert "Traceback" not in "\n".join(err) and not (out / "final").exists()
    assert not any("--max-pixels" in str(w.message) for w in recwarn)


def test_oversized_training_image_warning_names_no_restore_option(tmp_path, monkeypatch):
    import facemend.data as data_mod
    from facemend.io import load_rgb

    monkeypatch.setattr(data_mod, "load_rgb", lambda p: load_rgb(p, max_pixels=10))
    folder = tmp_path / "faces"
    folder.mkdir()
    torch.manual_seed(0)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "a.png")
    ds = data_mod.FaceFolder(folder, 32)
    with pytest.warns(UserWarning) as rec, pytest.raises(ValueError, match="no readable image"):
        ds[0]
    assert "over the limit" in str(rec[0].message) and "--max-pixels" not in str(rec[0].message)


def test_flipped_checkpoint_bytes_are_detected(tmp_path: Path) -> None:
    def state() -> TrainingState:
        torch.manual_seed(0)
        return TrainingState(7, 28, {"G": torch.nn.Linear(64, 64)}, {}, {})

    good = tmp_path / "ckpt.safetensors"
    save_checkpoint(good, state())
    assert len(read_header(good)["tensor_sha256"]) == 64
    load_checkpoint(good, state())  # intact: loads
    data = bytearray(good.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_checkpoint(bad, state())


def test_nan_checkpoint_is_refused_on_resume(tmp_path: Path) -> None:
    m = torch.nn.Linear(8, 8)
    with torch.no_grad():
        m.weight[0, 0] = float("nan")
    p = tmp_path / "nan.safetensors"
    save_checkpoint(p, TrainingState(3, 12, {"G": m}, {}, {}))
    with pytest.raises(CheckpointError, match="NaN/inf") as e:
        load_checkpoint(p, TrainingState(0, 0, {"G": torch.nn.Linear(8, 8)}, {}, {}))
    assert "last good" not in str(e.value)
