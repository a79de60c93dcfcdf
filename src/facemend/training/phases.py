"""The three steps of a training iteration (eq. 7-9 and lazy R1), as the loop calls them.

Gmain computes G(x) and the terms of eq. 7; its adversarial terms and Dmain's eq. 8 come from
one pass of D over the step's fakes and real faces; Dreg is the lazy R1 penalty, backpropagated
in place. The totals come from `losses.generator_loss` / `losses.discriminator_loss`.
"""

from __future__ import annotations

import torch

from facemend.config import RunConfig
from facemend.losses import (
    adversarial_g,
    diff_augment,
    discriminator_loss,
    feature_matching,
    gradient_variance,
    l1_loss,
    r1_penalty,
)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs natively: CUDA, or a CPU with bf16 instructions (AMX / AVX512-BF16).

    Elsewhere bf16 is emulated: measured on a 2-core AMD EPYC (AVX2 only), bf16 autocast made
    the 128 px discriminator's forward + backward 24x slower than fp32 (25.6 s vs 1.07 s).
    """
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(cfg: RunConfig, device: torch.device):
    """bf16 autocast where asked ('bf16') or, with 'auto', where bf16 is native; else a no-op."""
    on = cfg.train.amp == "bf16" or (cfg.train.amp == "auto" and native_bf16(device))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


def generator_phase(
    G_train: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
    percep, face_loss, cfg: RunConfig, dev: torch.device,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Gmain's reconstruction half: G(x) and the terms of eq. 7 that need no D."""
    with autocast(cfg, dev):
        fake, vq = G_train(x, generator=gen, return_vq=True)  # (B, 3, H, H)
        terms = {"loss_l1": l1_loss(fake, y), "loss_vq": vq}
        if cfg.train.gradient_variance_weight > 0:
            terms["loss_gv"] = gradient_variance(fake, y)
        if percep is not None:
            terms["loss_percep"] = percep(fake.float(), y)
        if face_loss is not None:
            terms["loss_face"], terms["loss_id"] = face_loss(fake, y)
    return fake, terms


def adversarial_phase(
    D_train: torch.nn.Module, fake: torch.Tensor, y: torch.Tensor, aug_gen: torch.Generator,
    cfg: RunConfig, dev: torch.device,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Gmain's adversarial terms (eq. 9, D feature matching) and Dmain's (eq. 8) from one pass.

    D sees cat([G(x), y]), augmented in pairs (a face and its ground truth get the same draw,
    so their block features compare face by face), in channels_last. Both losses come from
    this one forward: the caller backpropagates the G terms into G's parameters only and L_D
    into D's only (`torch.autograd.backward(..., inputs=...)`), which is what freezing D for
    Gmain and detaching G(x) for Dmain do, with one D forward of 2B faces instead of two.
    Measured with benchmarks/train_step.py (configs/generative-128.yaml, batch 8, one thread,
    16 steps x 2 rounds, side by side): 1.617 vs 1.389 images/s (1.16x) for the two-pass loop,
    at 0.67 GB more peak memory (3.84 vs 3.17 GB: D's graph is kept for the second backward).
    Returns (G terms, D terms).
    """
    tc = cfg.train
    B = fake.shape[0]
    with autocast(cfg, dev):
        both = diff_augment(torch.cat([fake, y]), tc.diffaug, aug_gen, pairs=2)  # (2B, 3, H, H)
        both = both.contiguous(memory_format=torch.channels_last)
        if tc.feature_matching_weight > 0:
            logits, feats = D_train(both, features=True)  # (2B,), per block (2B, C, s, s)
            g_terms = {"loss_adv": adversarial_g(logits[:B]),
                       "loss_fm": feature_matching([f[:B] for f in feats],
                                                   [f[B:] for f in feats])}
        else:
            logits = D_train(both)  # (2B,)
            g_terms = {"loss_adv": adversarial_g(logits[:B])}
        loss_d, d_terms = discriminator_loss(logits[B:], logits[:B])
    return g_terms, {"loss_d": loss_d, **d_terms}


def r1_phase(D_train: torch.nn.Module, y: torch.Tensor, tc) -> torch.Tensor:
    """Dreg: lazy R1, gamma / 2 * ||grad D(y)||^2 * interval, backpropagated here (fp32)."""
    y_req = y.detach().requires_grad_(True)
    r1 = r1_penalty(D_train(y_req), y_req)
    (r1 * (tc.r1_gamma / 2) * tc.r1_interval).backward()
    return r1.detach()
