"""Layers against their equations written literally: modulated conv (reference and fused forms)
against a per-sample loop, down convs against conv-then-pool; demodulation keeps unit variance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facemend.models.layers import EqualConv2d, ModulatedConv2d, assert_shape, fold_down_kernel


def naive_modconv(conv: ModulatedConv2d, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 eq. 1-3 written literally: modulate, demodulate, convolve, one sample at a time."""
    out = []
    styles = conv.affine(w)
    for b in range(x.shape[0]):
        wt = conv.weight * conv.scale * styles[b].reshape(1, -1, 1, 1)  # (Cout, Cin, k, k)
        if conv.demodulate:
            wt = wt / torch.sqrt(wt.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        xb = x[b : b + 1]
        if conv.transposed:  # StyleGAN2: stride-2 transposed conv, then the [1,3,3,1] FIR
            y = F.conv_transpose2d(xb, wt.transpose(0, 1), stride=2)  # (1, Cout, 2S+1, 2S+1)
            k = torch.tensor([1.0, 3.0, 3.0, 1.0])
            fir = (k[:, None] * k[None, :] / 16).expand(y.shape[1], 1, 4, 4)
            out.append(F.conv2d(F.pad(y, (1, 1, 1, 1)), fir, groups=y.shape[1]))
            continue
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


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("B", [1, 2])
@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_down_conv_equals_conv_then_average_pool(k: int, grad: bool, B: int,
                                                 channels_last: bool) -> None:
    torch.manual_seed(k)
    conv = EqualConv2d(5, 7, k, down=True, activate=True, gain=0.7)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(B, 5, 12, 12)
    if channels_last:
        conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    ref = F.avg_pool2d(F.conv2d(x, conv.weight * conv.scale, conv.bias, padding=k // 2), 2)
    ref = F.leaky_relu(ref, 0.2) * (2**0.5) * 0.7
    with torch.set_grad_enabled(grad):
        y = conv(x)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    if grad:  # the folded kernel's gradient is conv-then-pool's
        (g,) = torch.autograd.grad((y * ref.detach()).sum(), conv.weight)
        (want,) = torch.autograd.grad((ref * ref.detach()).sum(), conv.weight)
        torch.testing.assert_close(g, want, atol=1e-4, rtol=1e-4)


def test_fold_down_kernel_hand_worked() -> None:
    # 1-D view: taps [a, b, c] then a 2-average -> [a, a + b, b + c, c] / 2 per axis
    w = torch.tensor([[1.0, 2.0, 3.0]]).T @ torch.tensor([[1.0, 2.0, 3.0]])  # separable
    one_d = torch.tensor([1.0, 3.0, 5.0, 3.0]) / 2
    torch.testing.assert_close(fold_down_kernel(w.reshape(1, 1, 3, 3))[0, 0],
                               one_d[:, None] * one_d[None, :])


# (up, transposed, kernel, demodulate): plain 3x3, bilinear-up 3x3, transposed-up 3x3, ToRGB 1x1
LAYOUTS = {"plain": (False, False, 3, True), "bilinear": (True, False, 3, True),
           "transposed": (True, True, 3, True), "to_rgb": (False, False, 1, False)}
TOL = {"atol": 1e-5, "rtol": 1e-5}  # float32 rounding of two orders of the same sums


def _modconv_case(layout: str, B: int, channels_last: bool):
    torch.manual_seed(2)
    up, transposed, k, demod = LAYOUTS[layout]
    conv = ModulatedConv2d(6, 5, style_dim=7, kernel_size=k, demodulate=demod, up=up,
                           transposed=transposed)
    with torch.no_grad():
        conv.affine.bias.normal_()  # non-trivial styles
    x, w, bias = torch.randn(B, 6, 8, 8), torch.randn(B, 7), torch.randn(5)
    if channels_last:  # as model_restorer runs G: NHWC activations and weights
        conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return conv, x, w, bias


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_modconv_forms_equal_the_per_sample_loop_in_inference(layout: str, B: int,
                                                              channels_last: bool) -> None:
    """Reference (any batch) and fused (each sample alone) against the literal equation."""
    conv, x, w, bias = _modconv_case(layout, B, channels_last)
    ref = (naive_modconv(conv, x, w) + bias.reshape(1, -1, 1, 1)) * 1.3
    with torch.no_grad():  # in-place updates on this path
        got = {"reference": conv(x, w, bias=bias, gain=1.3, fused=False),
               "fused": torch.cat([conv(x[b : b + 1], w[b : b + 1], bias=bias, gain=1.3,
                                        fused=True) for b in range(B)])}
    for form, y in got.items():
        assert y.shape == ref.shape, form
        torch.testing.assert_close(y, ref, **TOL, msg=lambda m, f=form: f"{f}: {m}")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_fused_modconv_equals_reference_in_training(layout: str, channels_last: bool) -> None:
    """Batch of one under autograd: outputs and the gradients of every input and parameter."""
    conv, x, w, bias = _modconv_case(layout, 1, channels_last)
    size = 16 if LAYOUTS[layout][0] else 8
    target = torch.randn(1, 5, size, size)
    results = []
    for fused in (False, True):
        conv.zero_grad()
        xg, wg, bg = (t.detach().clone().requires_grad_() for t in (x, w, bias))
        y = conv(xg, wg, bias=bg, gain=1.3, fused=fused)
        (y * target).sum().backward()
        grads = [xg.grad, wg.grad, bg.grad] + [p.grad.clone() for p in conv.parameters()]
        results.append((y.detach(), grads))
    (ref, ref_grads), (got, got_grads) = results
    torch.testing.assert_close(got, ref, **TOL)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_fused_by_default_only_for_one_untraced_sample() -> None:
    conv, x, w, bias = _modconv_case("bilinear", 3, False)
    with torch.no_grad():
        one, ref_one = (conv(x[:1], w[:1], bias=bias, fused=f) for f in (True, False))
        assert not torch.equal(one, ref_one)  # the two forms round apart, so they can be told
        torch.testing.assert_close(conv(x[:1], w[:1], bias=bias), one, rtol=0, atol=0)
        torch.testing.assert_close(conv(x, w, bias=bias), conv(x, w, bias=bias, fused=False),
                                   rtol=0, atol=0)
        with pytest.raises(AssertionError, match="batch of one"):
            conv(x, w, fused=True)


@pytest.mark.parametrize("grad", [True, False])
def test_transposed_upsampling_matches_naive_loop(grad: bool) -> None:
    torch.manual_seed(5)
    conv = ModulatedConv2d(6, 5, style_dim=7, up=True, transposed=True)
    with torch.no_grad():
        conv.affine.bias.normal_()
    x, w, bias = torch.randn(3, 6, 8, 8), torch.randn(3, 7), torch.randn(5)
    ref = naive_modconv(conv, x, w) + bias.reshape(1, -1, 1, 1)
    assert ref.shape == (3, 5, 16, 16)
    with torch.set_grad_enabled(grad):
        batched = conv(x, w, bias=bias)
        ones = torch.cat([conv(x[b : b + 1], w[b : b + 1], bias=bias) for b in range(3)])
    torch.testing.assert_close(batched, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ones, ref, atol=1e-5, rtol=1e-5)


def test_transposed_upsampling_keeps_a_constant_image_constant() -> None:
    """A centre-tap kernel lands the input on every other pixel; the FIR (gain 4) fills the
    rest, so a constant image stays that constant away from the border."""
    conv = ModulatedConv2d(1, 1, style_dim=1, up=True, transposed=True, demodulate=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1 / conv.scale
        conv.affine.weight.zero_()  # styles = bias = 1
    y = conv(torch.full((1, 1, 8, 8), 0.7), torch.zeros(1, 1))
    torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.full((1, 1, 12, 12), 0.7))


def test_inference_sees_in_place_weight_updates() -> None:
    torch.manual_seed(6)
    conv = EqualConv2d(4, 6, 3, down=True, activate=True)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        before = conv(x)
        conv.weight.mul_(2.0)  # an optimiser step or load_state_dict does this in place
        after = conv(x)
    with torch.enable_grad():
        fresh = conv(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, fresh)
