"""Offline face-feature losses from the dlib ResNet port (used when VGG19 weights are absent).

- identity loss: 1 - cos(emb(G(x)), emb(y)) (as GFPGAN's ArcFace identity loss, with dlib's net);
- face-feature perceptual loss: L1 between the net's intermediate activations of G(x) and y,
  a stand-in for eq. 10's VGG19 perceptual term.
Both run the frozen net once per image pair on FFHQ-aligned faces, differentiably.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facemend.faces.chip import aligned_to_chip
from facemend.faces.dlib_resnet import FaceNet, load_face_net

# Stem, then levels at 35, 17, 8, 4, 2 px: deeper levels carry identity, shallow ones texture.
DEFAULT_LEVEL_WEIGHTS = (0.5, 0.5, 1.0, 1.0, 1.0, 0.5)


class FaceFeatureLoss(nn.Module):
    """Returns (face perceptual loss, identity loss) for restored and target aligned faces."""

    def __init__(self, net: FaceNet | None = None,
                 level_weights: tuple[float, ...] = DEFAULT_LEVEL_WEIGHTS) -> None:
        super().__init__()
        self.net = net if net is not None else load_face_net()
        self.level_weights = level_weights

    def forward(
        self, output: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B = output.shape[0]
        chips = aligned_to_chip(torch.cat([output, target]))  # (2B, 3, 150, 150)
        feats = self.net.features(chips)
        percep = output.new_zeros(())
        for w, f in zip(self.level_weights, feats, strict=True):
            percep = percep + w * F.l1_loss(f[:B], f[B:].detach())
        emb = self.net.head(feats[-1])  # (2B, 128)
        identity = 1.0 - F.cosine_similarity(emb[:B], emb[B:].detach(), dim=1).mean()
        return percep, identity
