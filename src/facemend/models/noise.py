"""Adaptive conditional noise (§3.2, eq. 5-6).

eps_c = sigmoid(A z) * eps, eps ~ N(0, 1) of the feature's shape, A a learned linear map from the
latent z to per-channel gates. It is added to the feature with a learned per-channel strength that
starts at 0, so a new model behaves deterministically until training finds the noise useful.
Randomness never enters here: the caller passes eps (drawn from a seeded generator, or given
explicitly for export), already multiplied by the user's `noise_scale`.
"""

from __future__ import annotations

import torch
from torch import nn

from facemend.models.layers import EqualLinear, assert_shape, inplace_ok


class AdaptiveNoise(nn.Module):
    """Eq. 6: x + strength * sigmoid(A z) * eps."""

    def __init__(self, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.gate = EqualLinear(latent_dim, channels)  # A
        self.strength = nn.Parameter(torch.zeros(channels))
        self.channels = channels

    def forward(
        self, x: torch.Tensor, z: torch.Tensor, eps: torch.Tensor | None, gain: float = 1.0,
        inplace: bool = False,
    ) -> torch.Tensor:
        """x + gain * strength * sigmoid(A z) * eps; `inplace` (no autograd) updates x itself."""
        if eps is None:
            return x
        B, C, H, W = x.shape
        assert_shape(eps, [B, C, H, W])
        gates = torch.sigmoid(self.gate(z)).reshape(B, C, 1, 1)  # (B, C, 1, 1)
        coef = self.strength.reshape(1, C, 1, 1) * gates  # (B, C, 1, 1)
        if gain != 1.0:
            coef = coef * gain
        if inplace and inplace_ok():
            return x.addcmul_(eps, coef)
        return x + coef * eps

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def draw_noise(
    shapes: list[tuple[int, ...]], generator: torch.Generator | None, device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """Eq. 5: eps ~ N(0, 1) for every noise site, from one seeded generator in a fixed order."""
    if generator is not None and generator.device.type != torch.device(device).type:
        # Draw on the generator's device, then move: the same seed gives the same noise anywhere.
        return [torch.randn(s, generator=generator, device=generator.device, dtype=dtype).to(device)
                for s in shapes]
    return [torch.randn(s, generator=generator, device=device, dtype=dtype) for s in shapes]
