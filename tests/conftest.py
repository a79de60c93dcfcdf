"""Shared fixtures: the shipped test faces, the larger shared face data, a single-thread torch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEMEND_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
FIXTURE_FACES = REPO / "tests" / "fixtures" / "faces"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (override with FACEMEND_SHARED); tests that need it skip when absent."""
    if not DATA.is_dir():
        pytest.skip(f"shared face data not found at {DATA} (set FACEMEND_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def face_files() -> list[Path]:
    """The 7 aligned 128 px test faces shipped in tests/fixtures/faces (their README: sources)."""
    files = sorted(FIXTURE_FACES.glob("*.png"))
    assert len(files) == 7, FIXTURE_FACES
    return files


@pytest.fixture(scope="session")
def faces(face_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped test faces in a private folder, for short training runs."""
    out = tmp_path_factory.mktemp("faces")
    for p in face_files:
        shutil.copy(p, out / p.name)
    return out
