"""Building blocks shared by G and D: equalized layers, modulated conv, resampling, shape checks.

Equalized learning rate (StyleGAN): weights are stored N(0, 1) and scaled by 1/sqrt(fan_in) at run
time, so Adam sees every layer on the same scale. Resampling is bilinear up / average-pool down
(StyleGAN2 uses FIR filters; the difference is small and these are faster on CPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)


def assert_shape(x: torch.Tensor, shape: Sequence[int | None]) -> None:
    """Check a tensor's shape; None matches any size (stylegan2-ada's contract)."""
    if x.ndim != len(shape):
        raise AssertionError(f"expected {len(shape)} dims {list(shape)}, got {list(x.shape)}")
    for got, want in zip(x.shape, shape):
        if want is not None and got != want:
            raise AssertionError(f"expected shape {list(shape)}, got {list(x.shape)}")


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (0.2) with StyleGAN's sqrt(2) gain, keeping unit variance."""
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W), bilinear."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2), 2x2 average."""
    return F.avg_pool2d(x, 2)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (and optional lr multiplier)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
        lr_mul: float = 1.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, b)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"in={i}, out={o}, lr_mul={self.lr_mul}"


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate; `up`/`down` resample by 2 before/after the conv."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
        up: bool = False, down: bool = False,
    ) -> None:
        super().__init__()
        assert not (up and down)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.up, self.down = up, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = upsample2x(x)
        x = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        if self.down:
            x = downsample2x(x)
        return x

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}->{o}, k={k}, up={self.up}, down={self.down}"


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated conv with weight demodulation.

    Per sample b: w'_{oik} = w_{oik} * s_{bi}; w''_{oik} = w'_{oik} / sqrt(sum_{ik} w'^2 + eps).
    Implemented as (x * s) conv w, then * d_{bo}, which equals the per-sample conv exactly and
    needs no grouped conv (measured faster on CPU, DESIGN §6).
    """

    def __init__(
        self, in_channels: int, out_channels: int, style_dim: int, kernel_size: int = 3,
        demodulate: bool = True, up: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = EqualLinear(style_dim, in_channels, bias_init=1.0)  # w -> s
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.demodulate, self.up = demodulate, up
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        assert_shape(x, [B, self.in_channels, None, None])
        styles = self.affine(w)  # (B, Cin)
        weight = self.weight * self.scale  # (Cout, Cin, k, k)
        x = x * styles.reshape(B, -1, 1, 1)
        if self.up:
            x = upsample2x(x)
        x = F.conv2d(x, weight, padding=self.padding)  # (B, Cout, H, W)
        if self.demodulate:
            # sum_{i,k} (w_oik s_bi)^2 = sum_i s_bi^2 * sum_k w_oik^2
            w2 = weight.square().sum(dim=(2, 3))  # (Cout, Cin)
            d = torch.rsqrt(styles.square() @ w2.t() + 1e-8)  # (B, Cout)
            x = x * d.reshape(B, -1, 1, 1)
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.out_channels}, demod={self.demodulate}, up={self.up}"
