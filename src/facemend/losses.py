"""Losses of §3.3 (eq. 3, 7-10) and DiffAugment, the Aug(.) of eq. 8-9.

Logits are D's raw outputs, shape (B,) or (B, 1). Images are (B, 3, H, W) in [-1, 1]. Weights
(alpha, lambda_p, beta, gamma) are applied by the training loop, not here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facemend.config import TrainConfig
from facemend.vgg19 import VGG19

# ---------------------------------------------------------------------------------------------
# Adversarial, reconstruction and VQ terms.


def per_head_mean(values: torch.Tensor) -> torch.Tensor:
    """A per-logit loss reduced per D head: (B,) or (B, 1) -> its mean; (B, 1 + P), D's global
    logit and P patch logits -> mean of column 0 + mean of the rest. Each head counts as one
    discriminator, as the scales of a multi-scale D do (pix2pixHD sums their losses)."""
    if values.ndim == 1 or values.shape[1] == 1:
        return values.mean()
    return values[:, 0].mean() + values[:, 1:].mean()


def adversarial_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 9: non-saturating G loss -log sigmoid(D(Aug(G(x)))) = softplus(-l), batch mean
    (per head: `per_head_mean`)."""
    return per_head_mean(F.softplus(-fake_logits))


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 10 first term: mean absolute error between restored and target images."""
    return (output - target).abs().mean()


def gradient_variance(output: torch.Tensor, target: torch.Tensor, patch: int = 8) -> torch.Tensor:
    """Gradient-variance loss (Abrahamyan et al. 2022): MSE between the per-patch variances of
    the grey images' Sobel gradients (x and y), on non-overlapping `patch` x `patch` tiles.

    L1 is minimised by the blurred mean of the plausible faces; this term asks each tile to have
    as much edge and texture energy as the ground truth's, wherever it is placed, so a sharp,
    slightly shifted detail costs less than its blur. (B, 3, H, W) in [-1, 1] -> scalar.
    """
    assert output.shape == target.shape and output.shape[-1] % patch == 0, output.shape
    sobel = output.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
    kernels = torch.stack([sobel, sobel.t()])[:, None]  # (2, 1, 3, 3): d/dx, d/dy

    def tile_variance(img: torch.Tensor) -> torch.Tensor:
        grey = img.float().mean(dim=1, keepdim=True)  # (B, 1, H, W)
        grad = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)  # (B, 2, H, W)
        tiles = F.unfold(grad, patch, stride=patch)  # (B, 2 * patch^2, T)
        return tiles.view(grad.shape[0], 2, patch * patch, -1).var(dim=2)  # (B, 2, T)

    return F.mse_loss(tile_variance(output), tile_variance(target))


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder 2018): mean over the batch of ||d D(y) / d y||^2; caller scales by gamma/2.

    `real_images` must have requires_grad=True and `real_logits` be computed from them. With a
    patch head, (B, 1 + P), D(y) is the global logit plus the mean patch logit, the scale at
    which `per_head_mean` lets the patch head's gradient reach G.
    """
    score = real_logits  # (B,)
    if real_logits.ndim == 2 and real_logits.shape[1] > 1:
        score = real_logits[:, 0] + real_logits[:, 1:].mean(1)
    (grad,) = torch.autograd.grad(score.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean()  # (B, C, H, W) -> scalar


# ---------------------------------------------------------------------------------------------
# Perceptual loss (eq. 10 second term).

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# GFPGAN's choice (the paper follows GFPGAN, §5): pre-activation conv features, shallow layers
# down-weighted, L1 per layer.
DEFAULT_LAYER_WEIGHTS: dict[str, float] = {
    "conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0,
}


class PerceptualLoss(nn.Module):
    """Eq. 10: sum_l w_l * L1(VGG19_l(G(x)), VGG19_l(y)) on ImageNet-normalised inputs.

    Follows GFPGAN/BasicSR: features are the conv outputs before ReLU (`conv1_2`, ..., `conv5_4`)
    with weights 0.1, 0.1, 1, 1, 1; inputs in [-1, 1] are mapped to [0, 1] and then normalised
    with ImageNet mean/std. The VGG is frozen; gradients flow to the first argument only.
    """

    def __init__(self, vgg: VGG19, layer_weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.vgg = vgg.eval().requires_grad_(False)
        self.layer_weights = dict(layer_weights or DEFAULT_LAYER_WEIGHTS)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Keep the VGG in eval mode whatever the loss module's mode."""
        super().train(mode)
        self.vgg.eval()
        return self

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = ((x + 1.0) * 0.5 - self.mean) / self.std  # (B, 3, H, W), ImageNet-normalised
        return self.vgg(x, tuple(self.layer_weights))

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted L1 distance of VGG19 features; output, target: (B, 3, H, W) in [-1, 1]."""
        assert output.shape == target.shape and output.shape[1] == 3, (output.shape, target.shape)
        f_out = self._features(output)
        with torch.no_grad():
            f_tgt = self._features(target.detach())
        loss = output.new_zeros(())
        for name, w in self.layer_weights.items():
            loss = loss + w * F.l1_loss(f_out[name], f_tgt[name])
        return loss


# ---------------------------------------------------------------------------------------------
# DiffAugment (Zhao et al. 2020): Aug(.) of eq. 8-9, applied to both real and fake images.


def _rand(shape: tuple[int, ...], x: torch.Tensor, gen: torch.Generator | None,
          pairs: int = 1) -> torch.Tensor:
    """U[0, 1) of `shape` drawn from `gen` (on its own device), moved to x's device and dtype.

    With `pairs` = k, only shape[0] / k values are drawn and tiled k times along the batch, so
    sample i and sample i + B/k get the same draw.
    """
    device = gen.device if gen is not None else x.device
    n = shape[0] // pairs
    r = torch.rand((n, *shape[1:]), generator=gen, device=device)
    return r.repeat(pairs, *([1] * (len(shape) - 1))).to(device=x.device, dtype=x.dtype)


def _randint(low: int, high: int, shape: tuple[int, ...], x: torch.Tensor,
             gen: torch.Generator | None, pairs: int = 1) -> torch.Tensor:
    """Integers in [low, high) from `gen`, on x's device; `pairs` as in `_rand`."""
    device = gen.device if gen is not None else x.device
    n = shape[0] // pairs
    r = torch.randint(low, high, (n, *shape[1:]), generator=gen, device=device)
    return r.repeat(pairs, *([1] * (len(shape) - 1))).to(x.device)


def rand_brightness(x: torch.Tensor, gen: torch.Generator | None, pairs: int = 1) -> torch.Tensor:
    """Add a per-sample offset in [-0.5, 0.5)."""
    return x + (_rand((x.shape[0], 1, 1, 1), x, gen, pairs) - 0.5)


def rand_saturation(x: torch.Tensor, gen: torch.Generator | None, pairs: int = 1) -> torch.Tensor:
    """Scale the distance to the per-pixel channel mean by a per-sample factor in [0, 2)."""
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    return (x - mean) * (_rand((x.shape[0], 1, 1, 1), x, gen, pairs) * 2.0) + mean


def rand_contrast(x: torch.Tensor, gen: torch.Generator | None, pairs: int = 1) -> torch.Tensor:
    """Scale the distance to the per-sample image mean by a factor in [0.5, 1.5)."""
    mean = x.mean(dim=[1, 2, 3], keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * (_rand((x.shape[0], 1, 1, 1), x, gen, pairs) + 0.5) + mean


def rand_translation(x: torch.Tensor, gen: torch.Generator | None, pairs: int = 1,
                     ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample by up to ratio * side pixels in y and x, filling with zeros."""
    B, _, H, W = x.shape
    sy, sx = int(H * ratio + 0.5), int(W * ratio + 0.5)
    ty = _randint(-sy, sy + 1, (B, 1, 1), x, gen, pairs)  # (B, 1, 1)
    tx = _randint(-sx, sx + 1, (B, 1, 1), x, gen, pairs)
    b = torch.arange(B, device=x.device).view(B, 1, 1)
    # Source row/column in the 1-pixel zero-padded image; out-of-range sources read the padding.
    gy = (torch.arange(H, device=x.device).view(1, H, 1) + ty + 1).clamp(0, H + 1)  # (B, H, 1)
    gx = (torch.arange(W, device=x.device).view(1, 1, W) + tx + 1).clamp(0, W + 1)  # (B, 1, W)
    x_pad = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    return x_pad[b, gy, gx].permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


def rand_cutout(x: torch.Tensor, gen: torch.Generator | None, pairs: int = 1,
                ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of side ratio * side per sample (may extend past the border)."""
    B, _, H, W = x.shape
    ch, cw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    cy = _randint(0, H + (1 - ch % 2), (B, 1, 1), x, gen, pairs)  # (B, 1, 1) cutout centre
    cx = _randint(0, W + (1 - cw % 2), (B, 1, 1), x, gen, pairs)
    ys = torch.arange(H, device=x.device).view(1, H, 1)
    xs = torch.arange(W, device=x.device).view(1, 1, W)
    inside = ((ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch)
              & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw))  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


AUGMENT_OPS = {
    "color": (rand_brightness, rand_saturation, rand_contrast),
    "translation": (rand_translation,),
    "cutout": (rand_cutout,),
}


def parse_policy(policy: str) -> list[str]:
    """'color,translation' -> ['color', 'translation']; unknown names are a ValueError."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for n in names:
        if n not in AUGMENT_OPS:
            raise ValueError(f"unknown DiffAugment op '{n}'; allowed: {', '.join(AUGMENT_OPS)}")
    return names


def diff_augment(x: torch.Tensor, policy: str = "color,translation",
                 generator: torch.Generator | None = None, pairs: int = 1) -> torch.Tensor:
    """Eq. 8-9 Aug(.): DiffAugment ops of `policy`, random per sample, differentiable in x.

    Use the same policy for real and fake images (each call draws its own per-sample parameters).
    `pairs` = k treats x as k stacked batches that share their draws: `cat([fake, real])` with
    k = 2 augments each generated face exactly as its ground truth (for D feature matching).
    """
    assert x.ndim == 4 and x.shape[0] % pairs == 0, (x.shape, pairs)
    for name in parse_policy(policy):
        for op in AUGMENT_OPS[name]:
            x = op(x, generator, pairs)
    return x


# ---------------------------------------------------------------------------------------------
# The totals of eq. 7 and eq. 8, from their terms.


def feature_matching(fake_feats: list[torch.Tensor],
                     real_feats: list[torch.Tensor]) -> torch.Tensor:
    """D feature matching (pix2pixHD): mean over D's blocks of L1(D_l(G(x)), sg(D_l(y))).

    A stabiliser of the adversarial term where no ImageNet perceptual network is available:
    G is pulled toward the ground truth in D's own feature space, at every scale of D.
    """
    assert len(fake_feats) == len(real_feats) > 0
    total = fake_feats[0].new_zeros((), dtype=torch.float32)
    for f, r in zip(fake_feats, real_feats, strict=True):
        total = total + F.l1_loss(f.float(), r.detach().float())
    return total / len(fake_feats)


def generator_loss(terms: dict[str, torch.Tensor], tc: TrainConfig) -> torch.Tensor:
    """Eq. 7: L_G = alpha * L_adv + L1 + lambda_p * L_percep + beta * L_VQ, weighted by `tc`.

    `terms` holds whichever of loss_l1, loss_vq, loss_adv (eq. 9), loss_percep (eq. 10, VGG19)
    were computed, plus facemend's offline terms: loss_fm (D feature matching), loss_gv
    (gradient variance), loss_face (dlib-ResNet feature perceptual) and loss_id (identity). A
    missing term counts 0.
    """
    weights = {"loss_l1": tc.l1_weight, "loss_vq": tc.vq_beta, "loss_adv": tc.alpha,
               "loss_gv": tc.gradient_variance_weight,
               "loss_percep": tc.lambda_p, "loss_fm": tc.feature_matching_weight,
               "loss_face": tc.face_perceptual_weight, "loss_id": tc.identity_weight}
    unknown = set(terms) - set(weights)
    assert not unknown, f"no weight for {sorted(unknown)}"
    total = terms["loss_l1"].new_zeros((), dtype=torch.float32)
    for name, value in terms.items():
        total = total + weights[name] * value
    return total


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 8: L_D = softplus(-D(Aug(y))) + softplus(D(Aug(sg(G(x))))), and its two terms."""
    terms = {"loss_d_real": per_head_mean(F.softplus(-real_logits)),
             "loss_d_fake": per_head_mean(F.softplus(fake_logits))}
    return terms["loss_d_real"] + terms["loss_d_fake"], terms
