"""Exponential moving average of G, by half-life in images (stylegan2-ada)."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch_images: int, images_seen: int, half_life: float, rampup: float) -> float:
    """Decay per step: 0.5 ** (batch / half_life), half-life capped at rampup * images seen."""
    hl = half_life
    if rampup > 0:
        hl = min(hl, images_seen * rampup)
    return 0.5 ** (batch_images / max(hl, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers (codebooks) are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)
