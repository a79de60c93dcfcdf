"""EMA vector quantizer (eq. 2-3): properties, not outputs."""

from __future__ import annotations

import pytest
import torch

from facemend.config import ModelConfig
from facemend.models.generator import Generator
from facemend.models.quantizer import EMAQuantizer, commitment_loss, nearest_code


def brute_force_nn(flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    d = ((flat[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)
    return d.argmin(1)


def test_indices_equal_brute_force_nearest_neighbours() -> None:
    g = torch.Generator().manual_seed(0)
    flat, codebook = torch.randn(500, 8, generator=g), torch.randn(37, 8, generator=g)
    assert torch.equal(nearest_code(flat, codebook, chunk=64), brute_force_nn(flat, codebook))


def test_eval_output_is_codebook_lookup() -> None:
    q = EMAQuantizer(dim=6, size=16).eval()
    p = torch.randn(2, 6, 4, 4)
    out, loss, idx = q(p)
    lookup = q.codebook[idx].permute(0, 3, 1, 2)  # (B, C, H, W)
    assert torch.equal(out, lookup)
    assert loss.item() == 0.0


def test_commitment_loss_hand_computed_and_straight_through_gradient() -> None:
    q = EMAQuantizer(dim=2, size=2)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    p = torch.tensor([[1.0, 2.0], [9.0, 7.0]]).t().reshape(1, 2, 1, 2).requires_grad_(True)
    out, loss, idx = q(p)
    assert idx.flatten().tolist() == [0, 1]
    # ||p - pq||^2 averaged over 4 elements: (1 + 4 + 1 + 9) / 4
    assert abs(loss.item() - 15.0 / 4) < 1e-6
    expected = torch.tensor([[0.0, 10.0], [0.0, 10.0]]).reshape(1, 2, 1, 2)
    torch.testing.assert_close(out.detach(), expected)
    out.sum().backward()
    assert torch.equal(p.grad, torch.ones_like(p))  # straight-through: d out / d p = 1


def test_commitment_loss_stops_gradient_to_the_codes() -> None:
    p = torch.randn(2, 8, 4, 4, requires_grad=True)
    pq = torch.randn(2, 8, 4, 4, requires_grad=True)
    loss = commitment_loss(p, pq)
    loss.backward()
    assert loss.item() == pytest.approx(((p - pq) ** 2).mean().item())
    assert p.grad is not None and pq.grad is None  # sg(pq): no gradient to the codebook side
    torch.testing.assert_close(p.grad, 2 * (p - pq).detach() / p.numel())


def test_ema_moves_codes_towards_assigned_hq_features() -> None:
    gen = torch.Generator().manual_seed(0)
    q = EMAQuantizer(dim=3, size=4, decay=0.5)
    q.ema_update(torch.randn(1, 3, 4, 4, generator=gen), gen)  # initialise
    target = torch.tensor([5.0, -3.0, 2.0])
    hq = target.reshape(1, 3, 1, 1).expand(1, 3, 4, 4).clone()
    k = int(nearest_code(target[None], q.codebook)[0])
    before = (q.codebook[k] - target).norm().item()
    q.ema_update(hq, gen)
    after = (q.codebook[k] - target).norm().item()
    assert after < before


def test_dead_codes_are_restarted_on_hq_features() -> None:
    gen = torch.Generator().manual_seed(0)
    q = EMAQuantizer(dim=2, size=8, decay=0.5, dead_threshold=0.5)
    feats = torch.randn(1, 2, 4, 4, generator=gen)
    q.ema_update(feats, gen)
    for _ in range(6):  # only one location keeps being used; the rest decay below threshold
        q.ema_update(torch.zeros(1, 2, 1, 1), gen)
    pool = torch.cat([feats.permute(0, 2, 3, 1).reshape(-1, 2), torch.zeros(1, 2)])
    # every code is either a fresh restart (a real HQ feature) or still in use
    for code in q.codebook:
        assert ((pool - code).norm(dim=1) < 1e-4).any() or code.norm() < 1e-4
    assert (q.cluster_size >= 0.5).sum() >= 1


def test_codebooks_learn_only_from_hq_features() -> None:
    """Training on LQ input leaves codebooks alone; only update_codebooks(y) moves them."""
    cfg = ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=16,
                      num_skips=2, codebook_size=8)
    torch.manual_seed(0)
    G = Generator(cfg).train()
    before = {k: v.clone() for k, v in G.state_dict().items() if "codebook" in k}
    _, vq = G.synthesize(torch.randn(2, 3, 32, 32), noise_scale=0.0)
    vq.backward()
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())
    G.update_codebooks(torch.randn(2, 3, 32, 32), torch.Generator().manual_seed(0))
    assert any(not torch.equal(v, G.state_dict()[k]) for k, v in before.items())


def test_straight_through_gradient_reaches_the_encoder() -> None:
    cfg = ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=16,
                      num_skips=2, codebook_size=8, fusion="add")
    torch.manual_seed(0)
    G = Generator(cfg).train()
    G.update_codebooks(torch.randn(2, 3, 32, 32), torch.Generator().manual_seed(0))
    out, vq = G.synthesize(torch.randn(2, 3, 32, 32), noise_scale=0.0)
    (out.square().mean() + vq).backward()
    # the first encoder block feeds the 16x16 skip: its gradient must be non-zero
    assert G.encoder.blocks[0].conv1.weight.grad.abs().sum() > 0
