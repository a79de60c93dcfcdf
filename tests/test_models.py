"""G and D shapes for every resolution and skip count; the paper-size model; a golden slice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from facemend.config import ModelConfig, RunConfig, load_config
from facemend.models.discriminator import Discriminator, minibatch_stddev
from facemend.models.generator import Generator

REPO = Path(__file__).resolve().parents[1]


def small(resolution: int, **kw) -> ModelConfig:
    return ModelConfig(resolution=resolution, channel_base=4 * resolution, max_channels=8,
                       latent_dim=8, codebook_size=16, d_channel_base=4 * resolution,
                       d_max_channels=8, **kw)


@pytest.mark.parametrize("H", [32, 64, 128, 256, 512])
def test_shapes_for_every_resolution_and_skip_count(H: int) -> None:
    max_skips = int(torch.log2(torch.tensor(H))) - 3
    for n in range(max_skips + 1):
        cfg = small(H, num_skips=n, upsample="transposed" if n % 2 else "bilinear")
        assert cfg.skip_resolutions == tuple(2 ** (3 + i) for i in range(n))
        G, D = Generator(cfg), Discriminator(cfg)
        x = torch.randn(2, 3, H, H)
        with torch.no_grad():
            y, vq = G.synthesize(x, generator=torch.Generator().manual_seed(0))
            logits = D(y)
        assert y.shape == (2, 3, H, H) and vq.ndim == 0
        assert logits.shape == (2,)
        assert sorted(int(k) for k in G.skips) == list(cfg.skip_resolutions)
    with pytest.raises(ValueError, match="num_skips"):
        small(H, num_skips=max_skips + 1)


@pytest.mark.parametrize("fusion", ["lgf", "add", "concat", "none"])
def test_ablation_switches(fusion: str) -> None:
    for quantize in (False, True):
        for noise in (False, True):
            cfg = small(32, num_skips=2, fusion=fusion, quantize=quantize, noise=noise,
                        skip_noise=noise)
            G = Generator(cfg)
            assert (G.skips["8"].quantizer is not None) == quantize
            assert (len(G.noise_shapes(1)) > 0) == noise
            assert G(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_rejects_wrong_input_shape() -> None:
    G = Generator(small(32, num_skips=1))
    with pytest.raises(AssertionError, match="expected shape"):
        G(torch.randn(1, 3, 64, 64))


def test_minibatch_stddev_channel() -> None:
    x = torch.randn(8, 3, 4, 4)
    y = minibatch_stddev(x, 4)
    assert y.shape == (8, 4, 4, 4)
    g = x.reshape(4, 2, 3, 4, 4)
    expected = g.std(0, unbiased=False).mean(dim=(1, 2, 3))  # per group column
    torch.testing.assert_close(y[:2, 3, 0, 0], expected, atol=1e-4, rtol=1e-4)
    assert minibatch_stddev(torch.randn(3, 2, 4, 4), 4).shape == (3, 3, 4, 4)


def test_paper_512_builds_and_runs_on_cpu() -> None:
    cfg = load_config(RunConfig, REPO / "configs" / "paper-512.yaml").model
    torch.manual_seed(0)
    G, D = Generator(cfg).eval(), Discriminator(cfg).eval()
    n_g = sum(p.numel() for p in G.parameters())
    n_d = sum(p.numel() for p in D.parameters())
    t0 = time.perf_counter()
    with torch.inference_mode():
        gen = torch.Generator().manual_seed(0)
        y = G(torch.randn(1, 3, 512, 512), noise_scale=1.0, generator=gen)
        logit = D(y)
    dt = time.perf_counter() - t0
    print(f"\npaper-512: G {n_g / 1e6:.2f}M params, D {n_d / 1e6:.2f}M params, "
          f"G+D forward {dt:.2f}s ({torch.get_num_threads()} threads)")
    assert y.shape == (1, 3, 512, 512) and torch.isfinite(y).all() and logit.shape == (1,)
    assert 40e6 < n_g < 120e6


GOLDEN_CFG = ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=16,
                         num_skips=2, codebook_size=8)
# G(x)[0, :, 16, 16:20] for torch.manual_seed(0) weights and x ~ N(0, 1) from Generator seed 1,
# noise from Generator seed 2 with every noise strength set to 0.1. Regenerate only on purpose.
GOLDEN = [
    [-0.602370, -0.697509, -0.476344, -0.476804],
    [0.681855, 0.823062, 1.147497, 0.959532],
    [1.283240, 1.321788, 0.481286, 0.064094],
]


def golden_output() -> torch.Tensor:
    torch.manual_seed(0)
    G = Generator(GOLDEN_CFG).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("strength"):
                p.fill_(0.1)
        x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        return G(x, generator=torch.Generator().manual_seed(2))[0, :, 16, 16:20]


def test_golden_slice() -> None:
    torch.testing.assert_close(golden_output(), torch.tensor(GOLDEN), atol=1e-4, rtol=0)


def test_residual_option_adds_the_input() -> None:
    torch.manual_seed(0)
    G = Generator(small(32, num_skips=1)).eval()
    R = Generator(small(32, num_skips=1, residual=True)).eval()
    R.load_state_dict(G.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(R(x, noise_scale=0), G(x, noise_scale=0) + x)


@pytest.mark.parametrize("upsample", ["bilinear", "transposed"])
def test_batch_equals_one_face_at_a_time(upsample: str) -> None:
    """The batch-of-one path (weights folded, in place) equals the batched path, noise included."""
    torch.manual_seed(3)
    G = Generator(small(64, num_skips=3, upsample=upsample)).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("strength"):
                p.fill_(0.2)
        x = torch.randn(3, 3, 64, 64)
        noise = G.make_noise(3, torch.Generator().manual_seed(4))
        batched = G(x, noise=noise)
        ones = [G(x[b : b + 1], noise=[n[b : b + 1] for n in noise]) for b in range(3)]
    torch.testing.assert_close(torch.cat(ones), batched, atol=1e-5, rtol=1e-5)


def test_full_res_skip_feeds_the_encoders_full_resolution_feature() -> None:
    cfg = small(32, num_skips=2, full_res_skip=True, quantize=False, skip_noise=False)
    assert cfg.skip_resolutions == (8, 16, 32)
    torch.manual_seed(0)
    G = Generator(cfg).eval()
    assert sorted(int(k) for k in G.skips) == [8, 16, 32]
    x = torch.randn(2, 3, 32, 32)
    enc = G.encoder(x)
    torch.testing.assert_close(enc.skips[32], G.encoder.from_rgb(x))  # (B, C_32, 32, 32)
    # the output depends on the full-resolution input pixel by pixel: with the 32 px skip's gate
    # forced shut (s = 0, q* = q), a 1-pixel change reaches the output only through the coarse
    # path; with it open (s = 1, q* = p + q) the change at that pixel is larger
    x2 = x.clone()
    x2[:, :, 16, 16] += 1.0

    def change(bias: float) -> float:
        with torch.no_grad():
            G.skips["32"].fusion.bias.fill_(bias)
            return (G(x2, noise_scale=0) - G(x, noise_scale=0))[:, :, 16, 16].abs().sum().item()

    assert change(30.0) > change(-30.0) > 0
    with pytest.raises(ValueError, match="num_skips"):
        small(32, num_skips=3, full_res_skip=True)  # num_skips still counts 8 .. H/2 only
