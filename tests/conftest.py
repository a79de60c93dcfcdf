"""Shared fixtures: where the real face data lives, and a quiet single-thread torch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEMEND_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (override with FACEMEND_SHARED); tests that need it skip when absent."""
    if not DATA.is_dir():
        pytest.skip(f"shared face data not found at {DATA} (set FACEMEND_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def faces(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 real aligned faces (CelebA eval) in a private folder, for short training runs."""
    out = tmp_path_factory.mktemp("faces")
    for p in sorted((shared_data / "celeba" / "eval256").glob("*.jpg"))[:16]:
        shutil.copy(p, out / p.name)
    return out
