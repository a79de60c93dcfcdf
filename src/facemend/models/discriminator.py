"""StyleGAN2 residual discriminator with minibatch standard deviation, resolution-generic."""

from __future__ import annotations

import torch
from torch import nn

from facemend.config import ModelConfig
from facemend.models.generator import ResDownBlock
from facemend.models.layers import EqualConv2d, EqualLinear, assert_shape, lrelu


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append the mean over features of the per-group stddev as one channel (B, C+1, S, S)."""
    B, C, H, W = x.shape
    g = min(group, B)
    while B % g:  # largest group size <= `group` that divides the batch
        g -= 1
    y = x.reshape(g, -1, C, H, W)  # (G, B/G, C, H, W)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()  # (B/G, C, H, W)
    y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(g, 1, H, W)  # (B, 1, H, W)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """D(x): (B, 3, H, H) -> (B,) logits; with `features=True` also each block's output.

    With `d_patch_res` = s the logits are (B, 1 + s*s): column 0 the global logit, then one
    logit per position of the block output at s (row-major), from a 1x1 conv (a PatchGAN head
    that shares D's trunk). `losses.per_head_mean` averages each head's loss on its own.

    The block outputs, (B, C_s, s, s) for s = H/2 .. 4, are what D feature matching compares
    (pix2pixHD): real and generated faces should look alike to D at every scale, not only in
    the final logit.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        H = cfg.resolution
        self.from_rgb = EqualConv2d(3, cfg.d_channels(H), 1, activate=True)
        blocks = []
        res = H
        while res > 4:
            blocks.append(ResDownBlock(cfg.d_channels(res), cfg.d_channels(res // 2)))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        s = cfg.d_patch_res
        self.patch = EqualConv2d(cfg.d_channels(s), 1, 1) if s else None
        c4 = cfg.d_channels(4)
        self.conv4 = EqualConv2d(c4 + 1, c4, 3, activate=True)
        self.fc = EqualLinear(c4 * 16, c4)
        self.out = EqualLinear(c4, 1)

    def forward(
        self, x: torch.Tensor, features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        H = self.cfg.resolution
        assert_shape(x, [None, 3, H, H])
        h = self.from_rgb(x)
        feats = []
        patch = None
        for block in self.blocks:
            h = block(h)
            feats.append(h)
            if self.patch is not None and h.shape[-1] == self.cfg.d_patch_res:
                patch = self.patch(h).flatten(1)  # (B, s*s)
        h = minibatch_stddev(h, self.cfg.mbstd_group)  # (B, C4 + 1, 4, 4)
        h = self.conv4(h)
        h = lrelu(self.fc(h.flatten(1)))
        logits = self.out(h).squeeze(1)  # (B,)
        if patch is not None:
            logits = torch.cat([logits[:, None], patch], dim=1)  # (B, 1 + s*s)
        return (logits, feats) if features else logits
