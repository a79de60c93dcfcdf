"""Modulated conv against a naive per-sample loop; demodulation keeps unit variance."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facemend.models.layers import EqualConv2d, ModulatedConv2d, assert_shape


def naive_modconv(conv: ModulatedConv2d, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 eq. 1-3 written literally: modulate, demodulate, convolve, one sample at a time."""
    out = []
    styles = conv.affine(w)
    for b in range(x.shape[0]):
        wt = conv.weight * conv.scale * styles[b].reshape(1, -1, 1, 1)  # (Cout, Cin, k, k)
        if conv.demodulate:
            wt = wt / torch.sqrt(wt.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        xb = x[b : b + 1]
        if conv.up:
            xb = F.interpolate(xb, scale_factor=2.0, mode="bilinear", align_corners=False)
        out.append(F.conv2d(xb, wt, padding=conv.padding))
    return torch.cat(out)


def test_modulated_conv_matches_naive_loop() -> None:
    torch.manual_seed(0)
    for up in (False, True):
        for demod in (True, False):
            conv = ModulatedConv2d(6, 5, style_dim=7, demodulate=demod, up=up)
            with torch.no_grad():
                conv.affine.bias.normal_()  # non-trivial styles
            x, w = torch.randn(3, 6, 8, 8), torch.randn(3, 7)
            torch.testing.assert_close(conv(x, w), naive_modconv(conv, x, w), atol=1e-5, rtol=1e-5)


def test_demodulated_output_has_unit_variance() -> None:
    torch.manual_seed(1)
    conv = ModulatedConv2d(64, 64, style_dim=16)
    x = torch.randn(8, 64, 32, 32)
    y = conv(x, torch.randn(8, 16))
    assert abs(y.std().item() - 1.0) < 0.1, y.std().item()


def test_equal_conv_resampling_shapes() -> None:
    x = torch.randn(2, 4, 8, 8)
    assert EqualConv2d(4, 6, 3, up=True)(x).shape == (2, 6, 16, 16)
    assert EqualConv2d(4, 6, 3, down=True)(x).shape == (2, 6, 4, 4)


def test_assert_shape_rejects_mismatch() -> None:
    assert_shape(torch.zeros(2, 3), [None, 3])
    for bad in ([None, 4], [2, 3, 1]):
        try:
            assert_shape(torch.zeros(2, 3), bad)
        except AssertionError:
            continue
        raise AssertionError(f"{bad} accepted")
