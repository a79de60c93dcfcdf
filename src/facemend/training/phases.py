"""The three steps of a training iteration (eq. 7-9 and lazy R1), as the loop calls them.

Gmain computes G(x) and the terms of eq. 7 with D frozen; Dmain eq. 8 on real faces and the
step's fakes, detached; Dreg the lazy R1 penalty, backpropagated in place. The totals come from
`losses.generator_loss` / `losses.discriminator_loss`.
"""

from __future__ import annotations

import torch

from facemend.config import RunConfig
from facemend.losses import (
    adversarial_g,
    diff_augment,
    discriminator_loss,
    feature_matching,
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
    G_train: torch.nn.Module, D: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
    gen: torch.Generator, aug_gen: torch.Generator, adv: bool, percep, face_loss,
    cfg: RunConfig, dev: torch.device,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Gmain: G(x) and the terms of eq. 7 (D frozen by the caller); returns (fake, terms).

    With feature matching on, D sees cat([G(x), y]) augmented in pairs (the same draw for a
    face and its ground truth), so its block features can be compared face by face.
    """
    tc = cfg.train
    with autocast(cfg, dev):
        fake, vq = G_train(x, generator=gen, return_vq=True)  # (B, 3, H, H)
        terms = {"loss_l1": l1_loss(fake, y), "loss_vq": vq}
        if adv and tc.feature_matching_weight > 0:
            B = fake.shape[0]
            both = diff_augment(torch.cat([fake, y]), tc.diffaug, aug_gen, pairs=2)
            logits, feats = D(both, features=True)  # (2B,), per block (2B, C, s, s)
            terms["loss_adv"] = adversarial_g(logits[:B])
            terms["loss_fm"] = feature_matching([f[:B] for f in feats], [f[B:] for f in feats])
        elif adv:
            terms["loss_adv"] = adversarial_g(D(diff_augment(fake, tc.diffaug, aug_gen)))
        if percep is not None:
            terms["loss_percep"] = percep(fake.float(), y)
        if face_loss is not None:
            terms["loss_face"], terms["loss_id"] = face_loss(fake, y)
    return fake, terms


def discriminator_phase(
    D_train: torch.nn.Module, y: torch.Tensor, fake: torch.Tensor, aug_gen: torch.Generator,
    cfg: RunConfig, dev: torch.device,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Dmain: eq. 8 on real faces and the same step's fakes, detached; returns (L_D, terms)."""
    tc = cfg.train
    with autocast(cfg, dev):
        real_logits = D_train(diff_augment(y, tc.diffaug, aug_gen))  # (B,)
        fake_logits = D_train(diff_augment(fake.detach(), tc.diffaug, aug_gen))
        loss_d, terms = discriminator_loss(real_logits, fake_logits)
    return loss_d, {"loss_d": loss_d, **terms}


def r1_phase(D_train: torch.nn.Module, y: torch.Tensor, tc) -> torch.Tensor:
    """Dreg: lazy R1, gamma / 2 * ||grad D(y)||^2 * interval, backpropagated here (fp32)."""
    y_req = y.detach().requires_grad_(True)
    r1 = r1_penalty(D_train(y_req), y_req)
    (r1 * (tc.r1_gamma / 2) * tc.r1_interval).backward()
    return r1.detach()
