"""Inference speed-ups change nothing beyond 1e-4: channels_last + inference_mode, caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facemend.config import RunConfig, load_config
from facemend.inference.paste import canvas_to_uint8, face_mask
from facemend.inference.restore import model_restorer
from facemend.models.generator import Generator

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gen() -> Generator:
    torch.manual_seed(0)
    g = Generator(load_config(RunConfig, REPO / "configs" / "tiny-64.yaml", []).model).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("strength"):
                p.normal_(0.0, 0.5)
    return g


def test_fast_restorer_equals_plain_forward(gen: Generator) -> None:
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    fast = model_restorer(gen, noise_scale=0.8, seed=3)  # channels_last + inference_mode
    g = torch.Generator().manual_seed(3)
    for _ in range(2):  # the second call draws the next noise from the same generator
        with torch.no_grad():
            ref = gen(x, noise_scale=0.8, generator=g)
        out = fast(x)
        assert out.is_contiguous() and out.dtype == torch.float32
        assert (out - ref).abs().max() < 1e-4


def test_bf16_option_runs_close(gen: Generator) -> None:
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ref = model_restorer(gen, noise_scale=0.0)(x)
    out = model_restorer(gen, noise_scale=0.0, bf16=True)(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out - ref).abs().mean() < 0.05 * ref.abs().mean() + 1e-3


def test_face_mask_is_cached_and_read_only() -> None:
    a, b = face_mask(128), face_mask(128)
    assert a is b and not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0] = 1.0


def test_canvas_to_uint8_matches_clip_rint() -> None:
    c = np.random.default_rng(0).uniform(-20, 280, size=(7, 5, 3)).astype(np.float32)
    want = np.clip(np.rint(c), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(canvas_to_uint8(c.copy()), want)


@pytest.mark.parametrize("scale", [1.0, 0.6])
def test_noise_drawn_per_site_equals_noise_drawn_up_front(gen: Generator, scale: float) -> None:
    """G draws eps site by site (memory); the numbers equal `make_noise`'s up-front draw."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        lazy = gen(x, noise_scale=scale, generator=torch.Generator().manual_seed(9))
        eps = gen.make_noise(2, torch.Generator().manual_seed(9))
        upfront = gen(x, noise=eps, noise_scale=scale)
        manual = gen(x, noise=[e * scale for e in eps], noise_scale=1.0)
    torch.testing.assert_close(lazy, upfront, rtol=0, atol=0)
    torch.testing.assert_close(lazy, manual, rtol=0, atol=0)


def test_memory_safe_batch() -> None:
    from facemend.inference.restore import memory_safe_batch

    assert memory_safe_batch(512, 8) == 4 and memory_safe_batch(512, 2) == 2
    assert memory_safe_batch(64, 8) == 8 and memory_safe_batch(1024, 8) == 1
