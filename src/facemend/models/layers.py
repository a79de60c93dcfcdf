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


def blur_upsampled(x: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's [1,3,3,1] FIR after a stride-2 transposed 3x3 conv: (B, C, 2S+1, 2S+1) ->
    (B, C, 2S, 2S), kernel sum 4 (the upsampling gain), pad 1 per side, depthwise."""
    C = x.shape[1]
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=x.dtype, device=x.device)
    k = (k1[:, None] * k1[None, :] / 16.0).expand(C, 1, 4, 4)  # (C, 1, 4, 4), sum 4 each
    return F.conv2d(x, k, padding=1, groups=C)


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


def fold_down_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, k, k) -> (O, I, k+1, k+1): conv_k then 2x2 average == this kernel at stride 2.

    Exact (a composition of two linear filters); (k+1)^2 multiply-adds per output instead of
    conv-then-pool's 4 k^2, i.e. 0.44x for k = 3.
    """
    cout, cin, k, _ = weight.shape
    out = weight.new_zeros(cout, cin, k + 1, k + 1)  # static shape: the ONNX exporter sees it
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        out[:, :, dy : dy + k, dx : dx + k] += weight
    return out * 0.25


def tracing() -> bool:
    """True while exporting (ONNX) or tracing: keep shapes static and the batch size symbolic."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def inplace_ok() -> bool:
    """True when no autograd graph is being recorded, so activations may be updated in place."""
    return not torch.is_grad_enabled()


def leaky(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (0.2) without gain, in place when no graph is recorded (inference)."""
    return F.leaky_relu_(x, 0.2) if inplace_ok() else F.leaky_relu(x, 0.2)


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate; `up`/`down` resample by 2 before/after the conv.

    `activate` applies `lrelu` (gain sqrt 2) and `gain` scales the output; both are folded into
    the weights, since lrelu(g * v) = g * lrelu(v) for g > 0. `down` equals conv-then-pool and runs
    as one stride-2 conv with the folded kernel (`fold_down_kernel`), or pools first for k = 1
    (a 1x1 conv commutes with the 2x2 average). One path for training, inference and export; the
    effective weights are recomputed each call: caching them between inference calls measured no
    gain per face of the default 128 px model (1.00-1.02x slower at batch 1 and 8, one thread).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
        up: bool = False, down: bool = False, activate: bool = False, gain: float = 1.0,
    ) -> None:
        super().__init__()
        assert not (up and down)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.up, self.down, self.activate = up, down, activate
        self.fold = down and kernel_size > 1  # stride-2 conv with the folded kernel
        self.gain = gain * (LRELU_GAIN if activate else 1.0)

    def effective(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) as applied: scaled, gained, and folded for `down` (k > 1)."""
        w = self.weight * (self.scale * self.gain)
        if self.fold:  # in the weight's memory format, or the conv reorders it
            fmt = (torch.contiguous_format if self.weight.is_contiguous()
                   else torch.channels_last)
            w = fold_down_kernel(w).contiguous(memory_format=fmt)
        return w, (self.bias * self.gain if self.bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.effective()
        if self.up:
            x = upsample2x(x)
        elif self.down and not self.fold:
            x = downsample2x(x)
        x = F.conv2d(x, w, b, stride=2 if self.fold else 1, padding=self.padding)
        return leaky(x) if self.activate else x

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return (f"{i}->{o}, k={k}, up={self.up}, down={self.down}, activate={self.activate}, "
                f"gain={self.gain:.4g}")


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated conv with weight demodulation; returns gain * (conv + bias).

    Per sample b: w'_{boik} = w_{oik} * s_{bi}; w''_{boik} = w'_{boik} / sqrt(sum_{ik} w'^2 + eps).
    `fused` (StyleGAN2's `fused_modconv`) picks one of two exact forms of this equation:

    - False, the reference: modulate the activations, (x * s_b) conv w, then * d_{bo} and + bias
      (sum_{ik} (w_oik s_bi)^2 = sum_i s_bi^2 sum_k w_oik^2). One conv with shared weights for the
      whole batch: any batch size, autograd, ONNX tracing (symbolic batch). Training uses it.
    - True, fused (a batch of one): s, the demodulation, `gain` and `bias` folded into this
      sample's weights, one conv and no pass over the activations.
    - None (default): fused for a batch of one outside tracing, else the reference. Measured per
      face of the default 128 px model (one CPU thread, channels_last, inference_mode, median
      of 40 alternating rounds): 1.014x faster than the reference (134 vs 136 ms CPU time).
      Batches stay on the reference: per-sample weights there need a grouped conv, no faster on
      CPU (DESIGN §6).
    """

    def __init__(
        self, in_channels: int, out_channels: int, style_dim: int, kernel_size: int = 3,
        demodulate: bool = True, up: bool = False, transposed: bool = False,
    ) -> None:
        super().__init__()
        assert not transposed or (up and kernel_size == 3)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = EqualLinear(style_dim, in_channels, bias_init=1.0)  # w -> s
        self.transposed = transposed  # up by a stride-2 transposed conv + blur (StyleGAN2)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.demodulate, self.up = demodulate, up
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
        gain: float = 1.0, fused: bool | None = None,
    ) -> torch.Tensor:
        B = x.shape[0]
        assert_shape(x, [B, self.in_channels, None, None])
        styles = self.affine(w) * self.scale  # (B, Cin); the equalized-lr scale rides along
        b = bias * gain if bias is not None else None
        if fused is None:
            fused = B == 1 and not tracing()  # a traced graph must serve any batch size
        if fused:
            return self._fused(x, styles, b, gain)
        x = self._conv(x * styles.reshape(B, -1, 1, 1), self.weight)  # (B, Cout, H', W')
        if self.demodulate:
            w2 = self.weight.square().sum(dim=(2, 3))  # (Cout, Cin)
            d = (torch.rsqrt(styles.square() @ w2.t() + 1e-8) * gain).reshape(B, -1, 1, 1)
            x = x.mul_(d) if inplace_ok() else x * d
        elif gain != 1.0:
            x = x * gain
        return self._add_bias(x, b)

    def _fused(self, x: torch.Tensor, styles: torch.Tensor, b: torch.Tensor | None,
               gain: float) -> torch.Tensor:
        """This sample's weights (Cout, Cin, k, k) and one conv (bias folded in too, except after
        the transposed conv, whose blur would spread it)."""
        assert x.shape[0] == 1, "the fused form serves a batch of one"
        wb = self.weight * styles.reshape(1, -1, 1, 1)  # keeps the weight's memory format
        if self.demodulate:
            wb = wb * (torch.rsqrt(wb.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8) * gain)
        elif gain != 1.0:
            wb = wb * gain
        if self.transposed:
            return self._add_bias(self._conv(x, wb), b)
        x = upsample2x(x) if self.up else x
        return F.conv2d(x, wb, b, padding=self.padding)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The reference's conv with this layer's resampling."""
        if self.transposed:  # (B, Cin, S, S) -> (B, Cout, 2S, 2S)
            return blur_upsampled(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        if self.up:
            x = upsample2x(x)
        return F.conv2d(x, weight, padding=self.padding)

    @staticmethod
    def _add_bias(x: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if b is None:
            return x
        b = b.reshape(1, -1, 1, 1)
        return x.add_(b) if inplace_ok() else x + b

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.out_channels}, demod={self.demodulate}, up={self.up}"
