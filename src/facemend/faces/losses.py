"""Offline face-feature losses from the dlib ResNet port (used when VGG19 weights are absent).

- identity loss: 1 - cos(emb(G(x)), emb(y)) (as GFPGAN's ArcFace identity loss, with dlib's net);
- face-feature perceptual loss: L1 between the net's intermediate activations of G(x) and y,
  a stand-in for eq. 10's VGG19 perceptual term.
Both run the frozen net on FFHQ-aligned faces: differentiably on the output, without a graph
on the target.
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
        feats = self.net.features(aligned_to_chip(output))  # chips (B, 3, 150, 150)
        with torch.no_grad():  # the target's side needs no graph: half the backward pass
            feats_t = self.net.features(aligned_to_chip(target.detach()))
            emb_t = self.net.head(feats_t[-1])  # (B, 128)
        percep = output.new_zeros((), dtype=torch.float32)
        for w, f, t in zip(self.level_weights, feats, feats_t, strict=True):
            percep = percep + w * F.l1_loss(f.float(), t.float())
        emb = self.net.head(feats[-1])  # (B, 128)
        identity = 1.0 - F.cosine_similarity(emb.float(), emb_t.float(), dim=1).mean()
        return percep, identity
