"""Shared fixtures: the shipped test faces, the larger shared face data, a single-thread torch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from facemend.config import ModelConfig
from facemend.models.generator import Generator
from facemend.models.pretrained import save_pretrained

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


# A tiny random 32 px model: the restore pipeline, CLI and API run in seconds with it.
TINY_MODEL = ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=16,
                         num_skips=1, codebook_size=8)


def tiny_generator(noise_strength: float = 0.0) -> Generator:
    """The tiny model with seed-0 weights; noise_strength > 0 switches its noise on."""
    torch.manual_seed(0)
    G = Generator(TINY_MODEL)
    if noise_strength:
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("strength"):
                    p.fill_(noise_strength)
    return G


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder of the tiny random model (noise off)."""
    out = tmp_path_factory.mktemp("weights")
    save_pretrained(tiny_generator(), out)
    return out


@pytest.fixture(scope="session")
def noisy_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder of the tiny random model with its noise on (strength 0.5)."""
    out = tmp_path_factory.mktemp("noisy-weights")
    save_pretrained(tiny_generator(0.5), out)
    return out
