"""The generator G(x, eps) of §3: a U-Net whose decoder is a StyleGAN2 synthesis network.

Encoder: fromRGB + residual down blocks H -> 4, linear 4x4 -> z, mapping MLP z -> w (one w shared
by every modulated conv). Decoder: from the encoder's 4x4 feature, per resolution: upsampling
modulated conv, [skip fusion], modulated conv, each followed by adaptive conditional noise, plus a
ToRGB summed with the upsampled RGB of the previous resolution (StyleGAN2 skip generator).
Skips (§3.1.1) at 8, 16, ... (num_skips of them): p = quantize(enc feature) (eq. 2) + noise (eq. 6),
fused into the decoder feature q with LGF (eq. 4) or a baseline; `full_res_skip` adds one at H
(facemend's addition) from the encoder's fromRGB feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from facemend.config import ModelConfig
from facemend.models.fusion import make_fusion
from facemend.models.layers import (
    LRELU_GAIN,
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    assert_shape,
    inplace_ok,
    leaky,
    lrelu,
    upsample2x,
)
from facemend.models.noise import AdaptiveNoise, draw_noise
from facemend.models.quantizer import EMAQuantizer


class ResDownBlock(nn.Module):
    """Residual block (B, Cin, S, S) -> (B, Cout, S/2, S/2) (StyleGAN2 D-style)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        # (lrelu(conv1(lrelu(conv0 x))) + skip x) / sqrt 2, with the 1/sqrt 2 folded into conv1
        # and skip (lrelu is positively homogeneous)
        self.conv0 = EqualConv2d(cin, cin, 3, activate=True)
        self.conv1 = EqualConv2d(cin, cout, 3, down=True, activate=True, gain=0.5**0.5)
        self.skip = EqualConv2d(cin, cout, 1, bias=False, down=True, gain=0.5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.conv0(x))  # (B, Cout, S/2, S/2)
        return y.add_(self.skip(x)) if inplace_ok() else y + self.skip(x)


@dataclass
class Encoded:
    """Encoder outputs: z (B, latent), the 4x4 feature, and skip features by resolution."""

    z: torch.Tensor  # (B, latent_dim)
    x4: torch.Tensor  # (B, C4, 4, 4)
    skips: dict[int, torch.Tensor]  # res -> (B, C_res, res, res), only the used resolutions


class Encoder(nn.Module):
    """x (B, 3, H, H) -> Encoded."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        H = cfg.resolution
        self.from_rgb = EqualConv2d(3, cfg.channels(H), 1, activate=True)
        self.blocks = nn.ModuleList()
        res = H
        while res > 4:
            self.blocks.append(ResDownBlock(cfg.channels(res), cfg.channels(res // 2)))
            res //= 2
        c4 = cfg.channels(4)
        self.conv4 = EqualConv2d(c4, c4, 3, activate=True)
        self.to_z = EqualLinear(c4 * 16, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> Encoded:
        H = self.cfg.resolution
        assert_shape(x, [None, 3, H, H])
        h = self.from_rgb(x)  # (B, C_H, H, H)
        skips: dict[int, torch.Tensor] = {H: h} if H in self.cfg.skip_resolutions else {}
        res = H  # a Python int, not h.shape[-1], which is a tensor while tracing (ONNX export)
        for block in self.blocks:
            h = block(h)
            res //= 2
            if res in self.cfg.skip_resolutions:
                skips[res] = h
        x4 = self.conv4(h)  # (B, C4, 4, 4)
        z = self.to_z(x4.flatten(1))  # (B, latent)
        return Encoded(z=z, x4=x4, skips=skips)


class StyledLayer(nn.Module):
    """Modulated conv + adaptive conditional noise + bias + lrelu."""

    def __init__(self, cin: int, cout: int, cfg: ModelConfig, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, cfg.latent_dim, up=up,
                                    transposed=up and cfg.upsample == "transposed")
        self.noise = AdaptiveNoise(cfg.latent_dim, cout) if cfg.noise else None
        self.bias = nn.Parameter(torch.zeros(cout))
        self.out_channels = cout

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, z: torch.Tensor, eps: torch.Tensor | None
    ) -> torch.Tensor:
        # lrelu(conv + noise + bias), with lrelu's gain folded into the conv and the noise
        x = self.conv(x, w, bias=self.bias, gain=LRELU_GAIN)
        if self.noise is not None:
            x = self.noise(x, z, eps, gain=LRELU_GAIN, inplace=True)
        return leaky(x)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation -> (B, 3, S, S)."""

    def __init__(self, cin: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, 3, cfg.latent_dim, kernel_size=1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w, bias=self.bias)


class Skip(nn.Module):
    """One skip connection at resolution S: quantize (eq. 2), noise (eq. 6), fuse (eq. 4)."""

    def __init__(self, channels: int, size: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.size = size
        self.quantizer = (
            EMAQuantizer(channels, cfg.codebook_size, cfg.vq_decay,
                         dead_threshold=cfg.vq_dead_threshold) if cfg.quantize else None
        )
        self.noise = AdaptiveNoise(cfg.latent_dim, channels) if cfg.skip_noise else None
        self.fusion = make_fusion(cfg.fusion, channels, size)

    def forward(
        self, p: torch.Tensor, q: torch.Tensor, z: torch.Tensor, eps: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        vq_loss = p.new_zeros(())
        if self.quantizer is not None:
            p, vq_loss, _ = self.quantizer(p)
        if self.noise is not None:
            p = self.noise(p, z, eps)
        return self.fusion(p, q), vq_loss


class Generator(nn.Module):
    """G(x, eps): (B, 3, H, H) in [-1, 1] -> (B, 3, H, H). Stochastic through explicit noise."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        layers = [EqualLinear(cfg.latent_dim, cfg.latent_dim) for _ in range(cfg.mapping_layers)]
        self.mapping = nn.ModuleList(layers)
        c4 = cfg.channels(4)
        self.layer4 = StyledLayer(c4, c4, cfg)
        self.rgb4 = ToRGB(c4, cfg)
        self.up_layers = nn.ModuleList()
        self.layers = nn.ModuleList()
        self.rgbs = nn.ModuleList()
        self.skips = nn.ModuleDict()
        res = 8
        while res <= cfg.resolution:
            cin, cout = cfg.channels(res // 2), cfg.channels(res)
            self.up_layers.append(StyledLayer(cin, cout, cfg, up=True))
            self.layers.append(StyledLayer(cout, cout, cfg))
            self.rgbs.append(ToRGB(cout, cfg))
            if res in cfg.skip_resolutions:
                self.skips[str(res)] = Skip(cout, res, cfg)
            res *= 2

    # -- noise -------------------------------------------------------------------------------
    def noise_shapes(self, batch: int) -> list[tuple[int, int, int, int]]:
        """Shapes of every noise site in the order `forward` consumes them (eq. 5)."""
        shapes: list[tuple[int, int, int, int]] = []
        if self.cfg.noise:
            shapes.append((batch, self.cfg.channels(4), 4, 4))
        res = 8
        while res <= self.cfg.resolution:
            c = self.cfg.channels(res)
            if self.cfg.noise:
                shapes.append((batch, c, res, res))
            if res in self.cfg.skip_resolutions and self.cfg.skip_noise:
                shapes.append((batch, c, res, res))
            if self.cfg.noise:
                shapes.append((batch, c, res, res))
            res *= 2
        return shapes

    def make_noise(
        self, batch: int, generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> list[torch.Tensor]:
        """Draw eps ~ N(0, 1) for every site from `generator` (eq. 5)."""
        device = device or next(self.parameters()).device
        return draw_noise(list(self.noise_shapes(batch)), generator, device)

    # -- forward -----------------------------------------------------------------------------
    def map(self, z: torch.Tensor) -> torch.Tensor:
        """Mapping MLP z -> w (B, latent)."""
        w = z
        for layer in self.mapping:
            w = lrelu(layer(w))
        return w

    def synthesize(
        self, x: torch.Tensor, noise: list[torch.Tensor] | None = None, noise_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G(x, eps) -> (image (B, 3, H, H), summed VQ commitment loss of the skips).

        Noise: explicit `noise` tensors (one per `noise_shapes` entry) or drawn from `generator`;
        both are multiplied by `noise_scale`, and `noise_scale == 0` uses no noise at all.
        """
        B = x.shape[0]
        enc = self.encoder(x)
        w = self.map(enc.z)
        expected = self.noise_shapes(B)
        use_noise = noise_scale != 0 and bool(expected)
        if use_noise and noise is not None and (
            len(noise) != len(expected) or any(tuple(e.shape) != s for e, s in zip(noise, expected))
        ):
            raise ValueError(f"noise must be {len(expected)} tensors of shapes {expected}")
        sites = iter(range(len(expected)))

        def next_eps(active: bool) -> torch.Tensor | None:
            """The next site's eps * noise_scale. Without explicit noise it is drawn here, site
            by site: the same numbers as `make_noise` draws up front (one generator, same
            order), but only the eps in use is alive (0.4 GB less per face at 512 px)."""
            if not (use_noise and active):
                return None
            i = next(sites)
            e = noise[i] if noise is not None else draw_noise([expected[i]], generator, x.device)[0]
            e = e.to(x.dtype)
            return e if noise_scale == 1.0 else e * noise_scale  # x * 1.0 == x exactly

        h = self.layer4(enc.x4, w, enc.z, next_eps(self.cfg.noise))
        rgb = self.rgb4(h, w)
        vq_total = x.new_zeros(())
        for i, res in enumerate(range(3, self.cfg.log2_res + 1)):
            s = 2**res
            h = self.up_layers[i](h, w, enc.z, next_eps(self.cfg.noise))
            if str(s) in self.skips:
                skip_eps = next_eps(self.cfg.skip_noise)
                h, vq = self.skips[str(s)](enc.skips[s], h, enc.z, skip_eps)
                vq_total = vq_total + vq
            h = self.layers[i](h, w, enc.z, next_eps(self.cfg.noise))
            rgb = upsample2x(rgb) + self.rgbs[i](h, w)
        H = self.cfg.resolution
        assert_shape(rgb, [B, 3, H, H])
        if self.cfg.residual:  # facemend option: restore as a correction of the input
            rgb = rgb + x
        return rgb, vq_total

    def forward(
        self, x: torch.Tensor, noise: list[torch.Tensor] | None = None, noise_scale: float = 1.0,
        generator: torch.Generator | None = None, return_vq: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """G(x, eps) (eq. 5): the restored image (B, 3, H, H) [, VQ commitment loss]."""
        out, vq = self.synthesize(x, noise, noise_scale, generator)
        return (out, vq) if return_vq else out

    @torch.no_grad()
    def update_codebooks(
        self, y: torch.Tensor, generator: torch.Generator | None = None, all_reduce=None
    ) -> None:
        """Eq. 3 (first term, EMA) from the encoder features of ground-truth HQ images y."""
        if not self.cfg.quantize or not self.skips:
            return
        feats = self.encoder(y).skips
        for key, skip in self.skips.items():
            skip.quantizer.ema_update(feats[int(key)], generator, all_reduce)
