"""LGF (eq. 4) and adaptive conditional noise (eq. 5-6)."""

from __future__ import annotations

import math

import pytest
import torch

from facemend.config import ModelConfig
from facemend.models.fusion import LinearGatedFusion, gated_mix, lgf_window
from facemend.models.generator import Generator


@pytest.mark.parametrize("H", [8, 16, 32, 64, 128, 256, 512, 1024])
def test_lgf_window_follows_the_paper(H: int) -> None:
    expected = 2 ** (int(math.log2(H)) - 5) if H > 32 else 1
    assert lgf_window(H) == expected
    assert H // lgf_window(H) <= 32


@pytest.mark.parametrize("S", [8, 32, 64, 128])
def test_lgf_weight_shape(S: int) -> None:
    f = LinearGatedFusion(4, S)
    n = S * S // lgf_window(S) ** 2
    assert f.weight.shape == (n, n)
    assert f(torch.randn(2, 4, S, S), torch.randn(2, 4, S, S)).shape == (2, 4, S, S)


def test_lgf_gate_forced_to_zero_or_one() -> None:
    f = LinearGatedFusion(3, 64)
    p, q = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f.weight.zero_()
        f.bias.fill_(-60.0)
    torch.testing.assert_close(f(p, q), q)
    with torch.no_grad():
        f.bias.fill_(60.0)
    torch.testing.assert_close(f(p, q), p + q)
    s = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(gated_mix(p, q, s), q + s * p)


def test_lgf_starts_uniform_and_its_weight_learns() -> None:
    f = LinearGatedFusion(3, 16)
    p, q = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(f.gate(p, q), torch.full((2, 3, 16, 16), 0.5))
    (f(p, q) * torch.randn(2, 3, 16, 16)).sum().backward()
    assert f.weight.grad is not None and f.weight.grad.abs().sum() > 0


def tiny(**kw) -> Generator:
    cfg = ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=16,
                      num_skips=2, codebook_size=8, **kw)
    torch.manual_seed(0)
    G = Generator(cfg).eval()
    with torch.no_grad():  # strengths start at 0: make the noise visible
        for name, p in G.named_parameters():
            if name.endswith("strength"):
                p.fill_(0.5)
    return G


def test_noise_seeded_and_switchable() -> None:
    G = tiny()
    x = torch.randn(2, 3, 32, 32)
    a = G(x, generator=torch.Generator().manual_seed(1))
    b = G(x, generator=torch.Generator().manual_seed(1))
    c = G(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    d0 = G(x, noise_scale=0.0, generator=torch.Generator().manual_seed(1))
    d1 = G(x, noise_scale=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(d0, d1)


def test_explicit_noise_reproduces_seeded_run() -> None:
    G = tiny()
    x = torch.randn(2, 3, 32, 32)
    seeded = G(x, noise_scale=0.7, generator=torch.Generator().manual_seed(3))
    eps = G.make_noise(2, torch.Generator().manual_seed(3))
    torch.testing.assert_close(G(x, noise=eps, noise_scale=0.7), seeded, atol=0, rtol=0)
    with pytest.raises(ValueError, match="noise must be"):
        G(x, noise=eps[:-1])


def test_noise_gate_depends_on_latent() -> None:
    G = tiny()
    site = G.layers[0].noise
    z1, z2 = torch.randn(1, 16), torch.randn(1, 16)
    eps = torch.ones(1, site.channels, 8, 8)
    zero = torch.zeros_like(eps)
    assert not torch.allclose(site(zero, z1, eps), site(zero, z2, eps))


def test_no_noise_config_has_no_noise_sites() -> None:
    G = tiny(noise=False, skip_noise=False)
    assert G.noise_shapes(2) == []
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(G(x, generator=torch.Generator().manual_seed(0)),
                       G(x, generator=torch.Generator().manual_seed(1)))
