"""Skip-feature fusion: linear gated fusion (§3.1.3, eq. 4) and the ablation baselines.

All fusions take p (encoder skip, after quantization and noise) and q (decoder feature), both
(B, C, S, S), and return the fused decoder feature of the same shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facemend.config import FusionKind
from facemend.models.layers import EqualConv2d, assert_shape


def lgf_window(size: int) -> int:
    """Eq. 4's window r = 2^(log2 S - 5) if S > 32 else 1, so the pooled grid is at most 32x32."""
    return 2 ** (int(math.log2(size)) - 5) if size > 32 else 1


def gated_mix(p: torch.Tensor, q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. 4, last line: q* = s * (p + q) + (1 - s) * q."""
    return s * (p + q) + (1.0 - s) * q


class LinearGatedFusion(nn.Module):
    """Eq. 4: o = AvgPool_r(p + q) W; s = Upsample_r(sigmoid(o)); q* = s(p + q) + (1 - s)q.

    W is (N, N) with N = S^2 / r^2, acting on the flattened spatial axis and shared across channels.
    A per-location bias lets the gate learn a spatial prior. W and the bias start at zero, so a new
    model's gate is a uniform s = 0.5 (q* = q + p / 2) instead of a random spatial pattern (a
    random W mixes all positions and showed as stripes in early training); W still learns, since
    its gradient is the pooled feature times the gate's gradient.
    """

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.channels, self.size = channels, size
        self.r = lgf_window(size)
        n = (size // self.r) ** 2
        self.weight = nn.Parameter(torch.zeros(n, n))  # W, (N, N)
        self.bias = nn.Parameter(torch.zeros(n))

    def gate(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Eq. 4, first two lines: the gated score s, (B, C, S, S) in (0, 1)."""
        B, C, S, _ = p.shape
        pooled = F.avg_pool2d(p + q, self.r) if self.r > 1 else p + q  # (B, C, S/r, S/r)
        o = pooled.flatten(2) @ self.weight + self.bias  # (B, C, N)
        s = torch.sigmoid(o).reshape(B, C, S // self.r, S // self.r)
        if self.r > 1:
            s = F.interpolate(s, scale_factor=float(self.r), mode="nearest")  # (B, C, S, S)
        return s

    def forward(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        assert_shape(p, [None, self.channels, self.size, self.size])
        assert_shape(q, list(p.shape))
        return gated_mix(p, q, self.gate(p, q))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={self.size}, r={self.r}"


class AddFusion(nn.Module):
    """Baseline: q* = p + q (plain additive U-Net skip)."""

    def forward(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        assert_shape(q, list(p.shape))
        return p + q


class ConcatFusion(nn.Module):
    """Baseline: q* = Conv1x1([p, q]) (concatenation, as GPEN)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = EqualConv2d(2 * channels, channels, 1)

    def forward(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        assert_shape(q, list(p.shape))
        return self.proj(torch.cat([p, q], dim=1))


class NoFusion(nn.Module):
    """Baseline: the skip is dropped, q* = q."""

    def forward(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return q


def make_fusion(kind: FusionKind, channels: int, size: int) -> nn.Module:
    """The fusion module for one skip, chosen by config (a plain if-chain, no registry)."""
    if kind == "lgf":
        return LinearGatedFusion(channels, size)
    if kind == "add":
        return AddFusion()
    if kind == "concat":
        return ConcatFusion(channels)
    if kind == "none":
        return NoFusion()
    raise ValueError(f"unknown fusion {kind!r}")
