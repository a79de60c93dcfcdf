"""Time-limited training (`train --max-minutes`) and scripts/gpu-train.sh's path, on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from facemend.cli import main
from facemend.config import RunConfig, load_config
from facemend.facepack import FacePack
from facemend.training.checkpoint import read_header
from facemend.training.loop import CKPT, train

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny-32.yaml"
FAST = ["train.face_perceptual_weight=0", "train.identity_weight=0", "train.log_every=1",
        "train.sample_every=1000", "train.ckpt_every=1000", "train.steps=6"]


def steps_in(run: Path) -> int:
    return int(read_header(run / CKPT)["step"])


def test_max_minutes_stops_with_a_checkpoint_that_resumes(faces: Path, tmp_path: Path) -> None:
    cfg = load_config(RunConfig, TINY, FAST)
    run = tmp_path / "run"
    # a budget shorter than one step: the first step ends past it, is logged and checkpointed
    train(cfg, [str(faces)], run, progress=False, max_minutes=1e-6)
    assert steps_in(run) == 1 and not (run / "final").exists()
    log = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss_l1" in r] == [1] and any("val_psnr" in r for r in log)
    train(cfg, [str(faces)], run, progress=False, resume=True, max_minutes=60)
    assert steps_in(run) == 6 and (run / "final").is_dir()
    assert main(["train", "--config", str(TINY), "--data", str(faces), "--out", str(run),
                 "--max-minutes", "0"]) == 2


def test_gpu_script_packs_trains_copies_and_the_copy_resumes(faces: Path, tmp_path: Path) -> None:
    out, pack, work = tmp_path / "out", tmp_path / "gpu-data" / "faces.pack", tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHON": sys.executable,
           "OUT": str(out), "FACEMEND_GPU_CONFIG": str(TINY), "FACEMEND_GPU_DEVICE": "cpu",
           "FACEMEND_GPU_BATCH": "2", "FACEMEND_GPU_WORKERS": "0", "FACEMEND_GPU_PACK": str(pack),
           "FACEMEND_GPU_DATA": f"{tmp_path / 'absent'} {faces}", "FACEMEND_GPU_RUN": str(work),
           "FACEMEND_GPU_SET": " ".join(["train.compile=false", *FAST])}

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(REPO / "scripts" / "gpu-train.sh"), *args], env=env,
                              capture_output=True, text=True, timeout=120)

    r = script("0.000001")
    assert r.returncode == 0, r.stderr
    copied = out / "generative-128"
    assert len(FacePack(pack)) == 7 and steps_in(copied) == 1
    assert json.loads((copied / "config.json").read_text())["train"]["batch_size"] == 2
    assert (copied / "log.jsonl").is_file() and list((copied / "samples").glob("step_*.png"))
    r = script("0.000001", str(copied))  # resume the copied run folder: one more step
    assert r.returncode == 0, r.stderr
    assert steps_in(work) == 2 and steps_in(copied) == 2
    # the CPU run continues from the copy: same config, another batch size, the pack as data
    assert main(["train", "--config", str(TINY), "--data", str(pack), "--out", str(copied),
                 "--resume", "--device", "cpu", "--no-progress", "--set", "train.batch_size=3",
                 *[a for kv in FAST for a in ("--set", kv)]]) == 0
    assert steps_in(copied) == 6 and (copied / "final").is_dir()
    env["FACEMEND_GPU_PACK"], env["FACEMEND_GPU_DATA"] = str(tmp_path / "none.pack"), "/absent"
    r = script("1")
    assert r.returncode == 2 and "none.pack not found" in r.stderr
