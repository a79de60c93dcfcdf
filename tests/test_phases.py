"""One D pass for Gmain and Dmain: the gradients are those of the two-pass definition."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facemend.config import RunConfig, load_config
from facemend.losses import (
    adversarial_g,
    diff_augment,
    discriminator_loss,
    feature_matching,
    generator_loss,
)
from facemend.models.discriminator import Discriminator
from facemend.models.generator import Generator
from facemend.training.phases import adversarial_phase, generator_phase

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny-32.yaml"


def grads(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]


@pytest.mark.parametrize("fm, patch", [(1.0, 0), (0.0, 0), (1.0, 8)])
def test_one_d_pass_gives_the_gradients_of_frozen_d_and_detached_fakes(
    fm: float, patch: int
) -> None:
    cfg = load_config(RunConfig, TINY, ["train.alpha=0.5", f"train.feature_matching_weight={fm}",
                                        "train.face_perceptual_weight=0",
                                        "train.identity_weight=0", f"model.d_patch_res={patch}"])
    torch.manual_seed(0)
    G, D = Generator(cfg.model), Discriminator(cfg.model)
    D.to(memory_format=torch.channels_last)
    x, y = torch.rand(2, 4, 3, 32, 32) * 2 - 1
    dev = torch.device("cpu")
    g_params, d_params = list(G.parameters()), list(D.parameters())

    # as the loop does it: one pass, L_G into G only, L_D into D only
    fake, g_terms = generator_phase(G, x, y, torch.Generator().manual_seed(1), None, None, cfg,
                                    dev)
    adv, d_terms = adversarial_phase(D, fake, y, torch.Generator().manual_seed(2), cfg, dev)
    g_terms.update(adv)
    torch.autograd.backward(generator_loss(g_terms, cfg.train), inputs=g_params,
                            retain_graph=True)
    torch.autograd.backward(d_terms["loss_d"], inputs=d_params)
    g_one, d_one = grads(g_params), grads(d_params)
    assert all(p.grad is not None for p in d_params)

    # the definition: Gmain with D frozen, Dmain on detached fakes (same noise and draws)
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    fake, terms = G(x, generator=torch.Generator().manual_seed(1), return_vq=True)
    ref = {"loss_l1": (fake - y).abs().mean(), "loss_vq": terms}
    both = diff_augment(torch.cat([fake, y]), cfg.train.diffaug,
                        torch.Generator().manual_seed(2), pairs=2)
    D.requires_grad_(False)
    logits, feats = D(both, features=True)
    ref["loss_adv"] = adversarial_g(logits[:4])
    if fm > 0:
        ref["loss_fm"] = feature_matching([f[:4] for f in feats], [f[4:] for f in feats])
    generator_loss(ref, cfg.train).backward()
    D.requires_grad_(True)
    logits = D(both.detach())  # the same draws, G(x) detached
    discriminator_loss(logits[4:], logits[:4])[0].backward()
    for a, b in zip(g_one, grads(g_params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(d_one, grads(d_params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert max(g.abs().max().item() for g in d_one) > 0
