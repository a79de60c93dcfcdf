"""The wheel outside the checkout: `pip install` into a fresh venv, then restore a photo there.

Slow (a venv with torch, about three minutes): `pytest -m slow tests/test_wheel.py`. pip must
find torch and the dependencies (an index or the local wheels of pip.conf); a failing install
fails the test with pip's output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facemend.io import load_rgb

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "photos" / "john2.jpg"
TORCH = "torch==2.13.0"  # as the Makefile: a pinned CPU build


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def _copy_checkout(dst: Path) -> None:
    """The files git tracks or would track (what a clone has, plus uncommitted edits)."""
    listed = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], REPO).split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


@pytest.mark.slow
def test_wheel_restores_a_photo_outside_the_checkout(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to build the wheel from")
    src, wheels, venv, work = (tmp_path / d for d in ("src", "wheels", "venv", "work"))
    for d in (src, work):
        d.mkdir()
    _copy_checkout(src)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(wheels), str(src)], tmp_path)
    (wheel,) = wheels.glob("facemend-*.whl")
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, TORCH], tmp_path)
    _run([*pip, str(wheel)], tmp_path)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FACEMEND_WEIGHTS")}
    env["OMP_NUM_THREADS"] = "1"
    facemend = str(venv / "bin" / "facemend")
    args = ["restore", str(PHOTO), "--seed", "0", "--threads", "1"]
    _run([facemend, *args, "-o", str(work / "out")], work, env)
    report = json.loads((work / "out" / "report.json").read_text())
    weights = Path(report["model"]["weights"])
    assert weights == venv / "share" / "facemend" / "weights" / "default"
    assert not weights.is_relative_to(REPO) and report["files"][0]["status"] == "ok"
    # the same weights as the checkout's: the same restored photo
    _run([sys.executable, "-m", "facemend", *args, "-o", str(tmp_path / "here")], REPO, env)
    name = PHOTO.name
    ours = load_rgb(tmp_path / "here" / "restored_imgs" / name)
    theirs = load_rgb(work / "out" / "restored_imgs" / name)
    assert np.array_equal(ours, theirs)
