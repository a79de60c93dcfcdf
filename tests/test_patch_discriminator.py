"""D's patch head (model.d_patch_res): its shape, its locality, its losses and its loading."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from facemend.config import ConfigError, ModelConfig
from facemend.losses import adversarial_g, discriminator_loss, per_head_mean, r1_penalty
from facemend.models.discriminator import Discriminator
from facemend.training.checkpoint import load_discriminator


def small(**kw) -> ModelConfig:
    return ModelConfig(resolution=64, d_channel_base=512, d_max_channels=16, **kw)


def test_patch_head_adds_one_logit_per_position_and_off_keeps_the_global_logit() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 3, 64, 64)
    assert Discriminator(small())(x).shape == (3,)
    logits = Discriminator(small(d_patch_res=16))(x)
    assert logits.shape == (3, 1 + 16 * 16)
    for bad in (3, 12, 64, 2):
        with pytest.raises(ConfigError, match="d_patch_res"):
            small(d_patch_res=bad)


def test_a_patch_logit_sees_its_region_and_not_the_far_corner() -> None:
    torch.manual_seed(0)
    D = Discriminator(small(d_patch_res=16)).eval()
    x = torch.randn(2, 3, 64, 64)
    y = x.clone()
    y[:, :, :8, :8] += 1.0  # change the top-left corner only
    a, b = D(x), D(y)
    patch_a, patch_b = a[:, 1:].reshape(2, 16, 16), b[:, 1:].reshape(2, 16, 16)
    assert (patch_a[:, :2, :2] - patch_b[:, :2, :2]).abs().min() > 0  # the corner's logits move
    torch.testing.assert_close(patch_a[:, 8:, 8:], patch_b[:, 8:, 8:])  # the far quarter doesn't
    assert (a[:, 0] - b[:, 0]).abs().min() > 0  # the global logit sees the whole face


def test_per_head_mean_known_values_and_losses_at_chance() -> None:
    v = torch.tensor([[1.0, 2.0, 4.0], [3.0, 6.0, 8.0]])
    assert per_head_mean(v).item() == pytest.approx(2.0 + 5.0)  # column 0's mean + the rest's
    assert per_head_mean(v[:, 0]).item() == pytest.approx(2.0)
    zeros = torch.zeros(4, 1 + 9)
    assert adversarial_g(zeros).item() == pytest.approx(2 * math.log(2))
    total, terms = discriminator_loss(zeros, zeros)
    assert total.item() == pytest.approx(4 * math.log(2))
    # a patch logit that is fooled counts as much as the global one
    mixed = torch.cat([torch.full((4, 1), 30.0), torch.full((4, 9), -30.0)], dim=1)
    assert adversarial_g(mixed).item() == pytest.approx(30.0, rel=1e-6)


def test_r1_with_a_patch_head_penalises_global_plus_mean_patch_gradient() -> None:
    torch.manual_seed(0)
    y = torch.randn(2, 3, 4, 4, requires_grad=True)
    w = torch.randn(3, 3, 4, 4)  # one linear "logit" per head: global, then two patches
    logits = torch.stack([(y * w[k]).sum(dim=[1, 2, 3]) for k in range(3)], dim=1)  # (2, 3)
    expected = (w[0] + (w[1] + w[2]) / 2).square().sum().item()  # the same for every sample
    assert r1_penalty(logits, y).item() == pytest.approx(expected, rel=1e-5)


def test_a_d_saved_without_patch_head_starts_one_with_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    old = Discriminator(small())
    save_file({k: v.contiguous() for k, v in old.state_dict().items()},
              tmp_path / "discriminator.safetensors")
    new = Discriminator(small(d_patch_res=16))
    head = {k: v.clone() for k, v in new.state_dict().items() if k.startswith("patch.")}
    load_discriminator(new, tmp_path)
    state = new.state_dict()
    assert head and all(torch.equal(state[k], v) for k, v in head.items())  # fresh head kept
    assert all(torch.equal(state[k], v) for k, v in old.state_dict().items())  # trunk loaded
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(new(x)[:, 0], old(x))  # the global logit is the saved D's
