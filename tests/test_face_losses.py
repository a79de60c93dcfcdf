"""Offline face-feature losses (dlib ResNet port): zero for identical faces, differentiable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facemend.faces.losses import FaceFeatureLoss
from facemend.io import to_tensor


def faces(face_files: list[Path], n: int) -> torch.Tensor:
    files = face_files[:n]
    imgs = [np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.LANCZOS)) for f in files]
    return torch.cat([to_tensor(i) for i in imgs])  # (n, 3, 64, 64)


def test_face_losses_zero_for_identical_and_differentiable(face_files: list[Path]) -> None:
    y = faces(face_files, 4)
    loss = FaceFeatureLoss()
    percep, identity = loss(y, y)
    assert percep.item() < 1e-6 and abs(identity.item()) < 1e-5
    x = (y + 0.3 * torch.randn_like(y)).clamp(-1, 1).requires_grad_(True)
    percep, identity = loss(x, y)
    assert percep.item() > 0.01 and identity.item() > 1e-4
    (percep + identity).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.net.parameters())  # the face net stays frozen


def test_identity_loss_ranks_other_people_further(face_files: list[Path]) -> None:
    y = faces(face_files, 7)
    loss = FaceFeatureLoss()
    _, same = loss(y.flip(-1), y)  # the same people, mirrored
    _, other = loss(y.roll(1, dims=0), y)  # each compared with someone else
    assert same.item() < other.item()


def test_face_net_first_loaded_under_inference_mode_still_trains() -> None:
    from facemend.faces.dlib_resnet import _load_cached, load_face_net

    _load_cached.cache_clear()
    with torch.inference_mode():
        load_face_net()
    x = torch.zeros(1, 3, 64, 64, requires_grad=True)
    percep, identity = FaceFeatureLoss()(x, torch.zeros(1, 3, 64, 64))
    (percep + identity).backward()  # would fail on inference tensors
    assert x.grad is not None
