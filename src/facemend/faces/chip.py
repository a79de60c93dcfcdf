"""dlib's 150x150 face chips as differentiable torch ops, and the FFHQ-aligned fast path.

`get_face_chip` reproduces `dlib.get_face_chip(img, shape, 150, 0.25)` (what
`compute_face_descriptor(img, shape)` feeds its ResNet): a least-squares similarity transform
from dlib's 5-point chip template to the landmarks, dlib's chip rectangle convention, bilinear
sampling, and, when the face is more than ~2x the chip size, dlib's 2:1 Gaussian pyramid
(5-tap [1 4 6 4 1] filter) so that downsampling does not alias. Everything is grid_sample /
conv2d, so gradients flow to the image (not through the landmarks' detection).

`aligned_to_chip` skips landmarks: FFHQ-aligned crops put the face at a fixed place, so one
affine (from the mean landmark positions, measured below) maps any H x H aligned face to its chip.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from facemend.faces.dlib_resnet import CHIP_SIZE, FaceNet, load_face_net

# dlib's 5-point chip template (interpolation.h, get_face_chip_details), in [0, 1] chip units
# before padding: outer/inner corner of the left eye in the image (subject's left), outer/inner
# corner of the right eye, bottom of the nose.
DLIB_CHIP_TEMPLATE = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)

# Mean dlib 5-point landmarks of FFHQ-aligned faces, as fractions of the crop side, with pixel
# p at (p + 0.5) / side. Measured by running dlib's HOG detector (largest face) and
# `shape_predictor_5_face_landmarks.dat` on the first 200 faces (sorted by name) of
# celeba/eval256 (256 px, FFHQ rule); per-point std 0.005-0.026 (largest for the nose).
FFHQ_MEAN_LANDMARKS = (
    (0.67123, 0.47318),
    (0.57170, 0.47965),
    (0.32705, 0.47439),
    (0.42691, 0.48039),
    (0.49941, 0.66760),
)

# Above this many source pixels per chip pixel, aligned crops are first resized (antialiased).
_ALIGNED_WORK_SIZE = 256


def chip_template(size: int = CHIP_SIZE, padding: float = 0.25) -> torch.Tensor:
    """dlib's 5 template points in chip pixel coordinates, (5, 2) as (x, y)."""
    t = torch.tensor(DLIB_CHIP_TEMPLATE, dtype=torch.float64)
    return (padding + t) / (2 * padding + 1) * size


def similarity_transform(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (rotation, scale, shift) mapping src to dst: (B, N, 2) -> (B, 2, 3).

    The 2-D closed form of Umeyama's method (what dlib's find_similarity_transform computes for
    non-reflected point sets): with complex points, a = sum(conj(s_c) d_c) / sum(|s_c|^2).
    """
    src_mean, dst_mean = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)  # (B, 1, 2)
    s, d = src - src_mean, dst - dst_mean  # (B, N, 2)
    norm = (s * s).sum((1, 2))  # (B,)
    a = (s * d).sum((1, 2)) / norm  # real part of scale * e^(i angle)
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1) / norm  # imaginary part
    M = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], 1)  # (B, 2, 2)
    t = dst_mean[:, 0] - (M @ src_mean[:, 0, :, None])[..., 0]  # (B, 2)
    return torch.cat([M, t[..., None]], -1)  # (B, 2, 3)


def face_chip_affine(landmarks: torch.Tensor, size: int = CHIP_SIZE,
                     padding: float = 0.25) -> torch.Tensor:
    """Chip pixel (x, y, 1) -> image pixel, as dlib's chip_details + extract_image_chip: (B, 2, 3).

    dlib keeps only the rotation and scale of the similarity transform and rebuilds the chip
    rectangle: centre = T(size/2, size/2), side = size * scale - 1 (`centered_drect`), whose
    corners map to chip pixels 0 and size - 1.
    """
    lm = landmarks.to(torch.float64)  # (B, 5, 2)
    tmpl = chip_template(size, padding).to(lm.device).expand_as(lm)
    T = similarity_transform(tmpl, lm)  # (B, 2, 3)
    scale = T[:, :, 0].norm(dim=1)  # (B,)
    rot = T[:, :, :2] / scale[:, None, None]  # (B, 2, 2)
    centre = T[:, :, :2] @ lm.new_tensor([size / 2, size / 2]) + T[:, :, 2]  # (B, 2)
    k = (size * scale - 1) / (size - 1)  # image pixels per chip pixel
    A = rot * k[:, None, None]  # (B, 2, 2)
    t = centre - A @ lm.new_tensor([(size - 1) / 2, (size - 1) / 2])  # (B, 2)
    return torch.cat([A, t[..., None]], -1)  # (B, 2, 3)


def _compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """outer o inner for (B, 2, 3) affine maps."""
    A = outer[:, :, :2] @ inner[:, :, :2]
    t = outer[:, :, :2] @ inner[:, :, 2:] + outer[:, :, 2:]
    return torch.cat([A, t], -1)


def warp_affine(img: torch.Tensor, affine: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear sample img (B, C, H, W) at affine(out pixel) in pixel units -> (B, C, size, size).

    Output pixels whose 2x2 source neighbourhood leaves the image are zero, as in dlib's
    interpolate_bilinear (grid_sample alone would blend toward zero instead).
    """
    B, _, H, W = img.shape
    to_norm = img.new_tensor([[2 / (W - 1), 0, -1], [0, 2 / (H - 1), -1]], dtype=torch.float64)
    from_norm = img.new_tensor([[(size - 1) / 2, 0, (size - 1) / 2],
                                [0, (size - 1) / 2, (size - 1) / 2]], dtype=torch.float64)
    theta = _compose(to_norm.expand(B, 2, 3), _compose(affine.to(torch.float64),
                                                       from_norm.expand(B, 2, 3)))
    grid = F.affine_grid(theta.to(img.dtype), [B, img.shape[1], size, size], align_corners=True)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    with torch.no_grad():
        px = (grid + 1) / 2 * grid.new_tensor([W - 1, H - 1])  # (B, size, size, 2) pixel x, y
        inside = ((px >= 0) & (px < grid.new_tensor([W - 1, H - 1]))).all(-1)  # (B, size, size)
    return out * inside[:, None].to(out.dtype)


def pyramid_down(img: torch.Tensor) -> torch.Tensor:
    """dlib's pyramid_down<2>: 5x5 [1 4 6 4 1] Gaussian, every other pixel; out q <-> in 2q + 2."""
    k1 = img.new_tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    C = img.shape[1]
    kernel = (k1[:, None] * k1[None, :]).expand(C, 1, 5, 5)
    out = F.conv2d(img, kernel, stride=2, groups=C)  # (B, C, (H-3)//2, (W-3)//2)
    return out


def _point_down(affine: torch.Tensor) -> torch.Tensor:
    """Compose dlib's pyramid coordinate map p -> p / 2 - (1.25, 0.75) after `affine`."""
    D = affine.new_tensor([[0.5, 0, -1.25], [0, 0.5, -0.75]]).expand(affine.shape[0], 2, 3)
    return _compose(D, affine)


def _floor_st(x: torch.Tensor) -> torch.Tensor:
    """floor(x) forward, identity gradient (straight-through), like dlib's uint8 truncation."""
    return x + (torch.floor(x) - x).detach()


def get_face_chip(img: torch.Tensor, landmarks: torch.Tensor, size: int = CHIP_SIZE,
                  padding: float = 0.25, quantize: bool = False) -> torch.Tensor:
    """dlib.get_face_chip: img (B, 3, H, W) in [0, 255], landmarks (B, 5, 2) -> (B, 3, size, size).

    `quantize=True` truncates to integers after each resampling, as dlib's uint8 images do
    (straight-through gradient); it brings descriptors within ~1e-3 of dlib's.
    """
    assert img.ndim == 4 and landmarks.shape[1:] == (5, 2), (img.shape, landmarks.shape)
    affine = face_chip_affine(landmarks, size, padding)  # (B, 2, 3)
    chips = []
    for i in range(img.shape[0]):
        a, level_img = affine[i : i + 1], img[i : i + 1]
        side = a[0, :, 0].norm().item() * (size - 1)  # dlib's chip rectangle side, image px
        levels = 0  # dlib: one level down while the halved rectangle still exceeds the chip
        while (side / 2 ** (levels + 1)) ** 2 > size * size:
            levels += 1
        if levels:
            # dlib builds the pyramid on a crop around the chip (`grow` px margin), so crop at
            # the same integer offset: it sets which source pixels the pyramid grid lands on
            corners = a[0, :, :2] @ a.new_tensor([[0, size - 1, 0, size - 1],
                                                   [0, 0, size - 1, size - 1]]) + a[0, :, 2:]
            grow = 2.0
            for _ in range(levels):
                grow = grow * 2 + 2
            tx, ty = (max(0, math.floor(v - grow + 0.5)) for v in corners.min(1).values.tolist())
            level_img = level_img[:, :, ty:, tx:]
            a = a.clone()
            a[:, :, 2] -= a.new_tensor([tx, ty])
        for _ in range(levels):
            if min(level_img.shape[2:]) <= 8:
                break
            level_img, a = pyramid_down(level_img), _point_down(a)
            level_img = _floor_st(level_img) if quantize else level_img
        chip = warp_affine(level_img, a, size)
        chips.append(_floor_st(chip) if quantize else chip)
    return torch.cat(chips)  # (B, 3, size, size)


def _aligned_chip_affine(side: int, device: torch.device) -> torch.Tensor:
    """The fixed chip -> crop-pixel affine for an FFHQ-aligned side x side crop: (1, 2, 3)."""
    lm = torch.tensor(FFHQ_MEAN_LANDMARKS, dtype=torch.float64, device=device) * side - 0.5
    return face_chip_affine(lm[None])


def aligned_to_chip(x: torch.Tensor) -> torch.Tensor:
    """FFHQ-aligned faces (B, 3, H, W) in [-1, 1] -> dlib chips (B, 3, 150, 150) in [0, 255]."""
    assert x.ndim == 4 and x.shape[1] == 3, x.shape
    img = (x.float() + 1.0) * 127.5  # (B, 3, H, W) in [0, 255]
    if img.shape[-1] > _ALIGNED_WORK_SIZE:  # antialias first: the chip needs ~0.6 x 256 px
        img = F.interpolate(img, size=(_ALIGNED_WORK_SIZE, _ALIGNED_WORK_SIZE), mode="bilinear",
                            antialias=True, align_corners=False)
    assert img.shape[-1] == img.shape[-2], "aligned faces are square"
    affine = _aligned_chip_affine(img.shape[-1], img.device).expand(img.shape[0], 2, 3)
    return warp_affine(img, affine, CHIP_SIZE)


def embed_aligned(x: torch.Tensor, net: FaceNet | None = None) -> torch.Tensor:
    """FFHQ-aligned faces (B, 3, H, W) in [-1, 1] -> dlib face descriptors (B, 128), differentiable.

    Any H, any device (the cached net for x's device is used unless `net` is given). Distances
    below 0.6 mean the same person (dlib's rule).
    """
    net = net if net is not None else load_face_net(device=x.device)
    return net(aligned_to_chip(x))
