"""FaceNet (Schroff et al. 2015) as InceptionResnetV1: the face features of iPrecision/iRecall (§4).

The network is Sandberg's TensorFlow FaceNet as packaged by facenet-pytorch (timesler), written
here from its description so that facenet-pytorch's released state dicts load with matching keys:
`20180402-114759-vggface2.pt` (VGGFace2, 8631 classes; the paper's choice) or
`20180408-102900-casia-webface.pt` (CASIA-WebFace, 10575 classes). Their `logits.*` classifier is
accepted and ignored: we only need the L2-normalised 512-D embedding.

Input contract of `InceptionResnetV1.forward`: (B, 3, 160, 160) RGB after facenet-pytorch's
fixed standardisation (x - 127.5) / 128 of 0-255 pixels. `facenet_input` turns FFHQ-aligned faces
in [-1, 1] into that: FaceNet expects an MTCNN face box (+ margin) resized to 160 px, so we crop
`FACENET_CROP` (see there) and resize it to 160x160 with antialiased bilinear interpolation.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facemend.io import find_weight_file, load_torch_state

VGGFACE2_FILE = "20180402-114759-vggface2.pt"
CASIA_FILE = "20180408-102900-casia-webface.pt"
ENV_FILE = "FACEMEND_FACENET"
RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
INPUT_SIZE = 160
EMBED_DIM = 512

# Crop of an FFHQ-aligned face fed to FaceNet, as fractions of the side: left, top, right, bottom.
# Derived from the mean dlib face box on FFHQ-aligned crops (features.ALIGNED_FACE_BOX: side
# 0.60, centre (0.48, 0.59)); MTCNN's box is close to it, and Sandberg's models saw the box with
# a margin (182-px crops with a 44-px margin, centre 160 px), i.e. the box fills ~85% of the
# input: a square of side 0.60 / 0.85 = 0.70 around the box centre, about the central 70% of the
# image shifted 9% down. It stays inside the image, so no padding is needed.
FACENET_CROP = (0.133, 0.235, 0.835, 0.937)


class FaceNetWeightsError(FileNotFoundError):
    """The FaceNet weights file is missing; str() is one line naming it and the env var."""


# ---------------------------------------------------------------------------------------------
# InceptionResnetV1 (Szegedy et al. 2016, "Inception-v4, Inception-ResNet"), facenet-pytorch keys.


class BasicConv2d(nn.Module):
    """conv (no bias) + batch norm (eps 1e-3, TensorFlow's; momentum 0.1) + ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _residual(x: torch.Tensor, branches: torch.Tensor, up: nn.Conv2d, scale: float) -> torch.Tensor:
    """x + scale * up(branches): the scaled residual shared by Block35, Block17 and Block8."""
    return x + scale * up(branches)


class Block35(nn.Module):
    """Inception-ResNet-A at 17x17 (256 channels): three branches, 1x1 up-projection, residual."""

    def __init__(self, scale: float = 0.17) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(256, 32, 1)
        self.branch1 = nn.Sequential(BasicConv2d(256, 32, 1), BasicConv2d(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(
            BasicConv2d(256, 32, 1), BasicConv2d(32, 32, 3, padding=1),
            BasicConv2d(32, 32, 3, padding=1),
        )
        self.conv2d = nn.Conv2d(96, 256, 1)  # with bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 256, x.shape
        b = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)  # (B, 96, H, W)
        return F.relu(_residual(x, b, self.conv2d, self.scale))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class Block17(nn.Module):
    """Inception-ResNet-B at 8x8 (896 channels): 1x1 and factorised 7x7 branches, residual."""

    def __init__(self, scale: float = 0.10) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(896, 128, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(896, 128, 1),
            BasicConv2d(128, 128, (1, 7), padding=(0, 3)),
            BasicConv2d(128, 128, (7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(256, 896, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 896, x.shape
        b = torch.cat([self.branch0(x), self.branch1(x)], 1)  # (B, 256, H, W)
        return F.relu(_residual(x, b, self.conv2d, self.scale))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class Block8(nn.Module):
    """Inception-ResNet-C at 3x3 (1792 channels); the network's last one has no ReLU."""

    def __init__(self, scale: float = 0.20, relu: bool = True) -> None:
        super().__init__()
        self.scale, self.relu = scale, relu
        self.branch0 = BasicConv2d(1792, 192, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(1792, 192, 1),
            BasicConv2d(192, 192, (1, 3), padding=(0, 1)),
            BasicConv2d(192, 192, (3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(384, 1792, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 1792, x.shape
        b = torch.cat([self.branch0(x), self.branch1(x)], 1)  # (B, 384, H, W)
        out = _residual(x, b, self.conv2d, self.scale)
        return F.relu(out) if self.relu else out

    def extra_repr(self) -> str:
        return f"scale={self.scale}, relu={self.relu}"


class Mixed6a(nn.Module):
    """Reduction-A: 256 -> 896 channels, 17x17 -> 8x8 (stride-2 conv, conv tower, max pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(256, 384, 3, stride=2)
        self.branch1 = nn.Sequential(
            BasicConv2d(256, 192, 1), BasicConv2d(192, 192, 3, padding=1),
            BasicConv2d(192, 256, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 256, x.shape
        pooled = F.max_pool2d(x, 3, stride=2)
        return torch.cat([self.branch0(x), self.branch1(x), pooled], 1)  # (B, 896, H', W')


class Mixed7a(nn.Module):
    """Reduction-B: 896 -> 1792 channels, 8x8 -> 3x3 (three conv towers and a max pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(896, 256, 1), BasicConv2d(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(BasicConv2d(896, 256, 1), BasicConv2d(256, 256, 3, stride=2))
        self.branch2 = nn.Sequential(
            BasicConv2d(896, 256, 1), BasicConv2d(256, 256, 3, padding=1),
            BasicConv2d(256, 256, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 896, x.shape
        b = [self.branch0(x), self.branch1(x), self.branch2(x), F.max_pool2d(x, 3, stride=2)]
        return torch.cat(b, 1)  # (B, 1792, H', W')


class InceptionResnetV1(nn.Module):
    """FaceNet embedding (B, 512), unit L2 norm, of standardised (B, 3, 160, 160) faces."""

    def __init__(self, dropout: float = 0.6) -> None:
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, 3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, 3)
        self.conv2d_2b = BasicConv2d(32, 64, 3, padding=1)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3)
        self.conv2d_4b = BasicConv2d(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*(Block35(0.17) for _ in range(5)))
        self.mixed_6a = Mixed6a()
        self.repeat_2 = nn.Sequential(*(Block17(0.10) for _ in range(10)))
        self.mixed_7a = Mixed7a()
        self.repeat_3 = nn.Sequential(*(Block8(0.20) for _ in range(5)))
        self.block8 = Block8(1.0, relu=False)
        self.dropout = nn.Dropout(dropout)  # identity in eval mode
        self.last_linear = nn.Linear(1792, EMBED_DIM, bias=False)
        self.last_bn = nn.BatchNorm1d(EMBED_DIM, eps=0.001, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 3, x.shape
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))  # (B, 64, 77, 77) at 160 px
        x = F.max_pool2d(x, 3, stride=2)  # (B, 64, 38, 38)
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(x)))  # (B, 256, 17, 17)
        x = self.mixed_6a(self.repeat_1(x))  # (B, 896, 8, 8)
        x = self.mixed_7a(self.repeat_2(x))  # (B, 1792, 3, 3)
        x = self.block8(self.repeat_3(x))  # (B, 1792, 3, 3)
        x = self.dropout(x.mean(dim=(2, 3)))  # (B, 1792) global average pool
        x = self.last_bn(self.last_linear(x))  # (B, 512)
        return F.normalize(x, p=2, dim=1)


# ---------------------------------------------------------------------------------------------
# Input preparation and loading.


def facenet_input(x: torch.Tensor) -> torch.Tensor:
    """Aligned faces (B, 3, H, W) in [-1, 1] -> standardised FaceNet input (B, 3, 160, 160)."""
    assert x.ndim == 4 and x.shape[1] == 3, x.shape
    h, w = x.shape[2:]
    left, top, right, bottom = FACENET_CROP
    crop = x[:, :, round(top * h) : round(bottom * h), round(left * w) : round(right * w)]
    crop = F.interpolate(crop, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                         align_corners=False, antialias=True)  # (B, 3, 160, 160)
    return crop * (127.5 / 128.0)  # = ((crop + 1) * 127.5 - 127.5) / 128 on 0-255 pixels


def embed_aligned(model: InceptionResnetV1, x: torch.Tensor) -> torch.Tensor:
    """FaceNet embeddings (B, 512) of FFHQ-aligned faces (B, 3, H, W) in [-1, 1]."""
    return model(facenet_input(x))


def _torch_home() -> Path:
    """$TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch (facenet-pytorch's rule)."""
    cache = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(os.environ.get("TORCH_HOME", Path(cache) / "torch")).expanduser()


def find_facenet_weights(path: str | Path | None = None) -> Path:
    """The FaceNet file: `path`, else $FACEMEND_FACENET, else $TORCH_HOME/checkpoints/."""
    candidates = [Path(path)] if path is not None else []
    if os.environ.get(ENV_FILE):
        candidates.append(Path(os.environ[ENV_FILE]))
    candidates.append(_torch_home() / "checkpoints")
    found = find_weight_file(candidates, (VGGFACE2_FILE, CASIA_FILE))
    if found is not None:
        return found
    where = ", ".join(str(c) for c in candidates)
    raise FaceNetWeightsError(
        f"FaceNet needs weights {VGGFACE2_FILE} (facenet-pytorch release, {RELEASE}{VGGFACE2_FILE}"
        f"); set ${ENV_FILE} to the file (searched: {where})"
    )


def check_facenet_state(state: dict, model: InceptionResnetV1) -> dict[str, torch.Tensor]:
    """The state dict without `logits.*`; ValueError naming the first wrong key or shape."""
    expected = model.state_dict()
    kept = {k: v for k, v in state.items() if not str(k).startswith("logits.")}
    for k, v in kept.items():
        if k not in expected:
            raise ValueError(f"unexpected key {k!r}")
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{k!r} is a {type(v).__name__}, not a tensor")
        if v.shape != expected[k].shape:
            want = tuple(expected[k].shape)
            raise ValueError(f"{k!r} has shape {tuple(v.shape)}, expected {want}")
    for k in expected:
        if k not in kept and not k.endswith("num_batches_tracked"):  # old files lack these
            raise ValueError(f"missing key {k!r}")
    return kept


def load_facenet(path: str | Path | None = None) -> InceptionResnetV1:
    """InceptionResnetV1 in eval mode with facenet-pytorch weights from a local file."""
    p = find_facenet_weights(path)
    state = load_torch_state(p)  # weights_only: never runs pickled code
    model = InceptionResnetV1()
    try:
        kept = check_facenet_state(state, model)
    except ValueError as e:
        raise ValueError(f"{p}: not a facenet-pytorch InceptionResnetV1 state dict ({e})") from None
    model.load_state_dict(kept, strict=False)  # only num_batches_tracked may be absent
    model.requires_grad_(False)
    return model.eval()
