"""LPIPS (Zhang et al. 2018), v0.1, with our own AlexNet / VGG16 feature stacks (no torchvision).

d(x, y) = sum_l mean_hw( w_l . (norm(f_l(x)) - norm(f_l(y)))^2 ), where f_l are five ReLU outputs
of an ImageNet backbone applied to the input after the fixed LPIPS scaling layer, norm() divides
each spatial feature vector by its L2 norm (+1e-10) and w_l >= 0 are the learned 1x1 "linear heads".

Weights come only from local files (nothing is downloaded):
- backbone, torchvision state-dict layout (`features.<i>.weight|bias`): `alexnet-owt-7be5be79.pth`
  or `vgg16-397923af.pth`;
- heads, the official `lpips` layout (`lin<l>.model.1.weight`): `weights/v0.1/alex.pth`, `vgg.pth`
  (the `lpips` PyPI package ships them; its folder is searched when installed).
Searched folders: the `root` argument, $FACEMEND_LPIPS_DIR, $TORCH_HOME/hub/checkpoints,
~/.cache/torch/hub/checkpoints (each also with `checkpoints/` and `weights/v0.1/` below it).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from facemend.io import load_torch_state

Net = Literal["alex", "vgg"]
BACKBONE_FILES: dict[str, str] = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
HEAD_FILES: dict[str, str] = {"alex": "alex.pth", "vgg": "vgg.pth"}
ENV_DIR = "FACEMEND_LPIPS_DIR"


class LPIPSWeightsError(FileNotFoundError):
    """A missing LPIPS weights file; str() is one line naming the file and where it was sought."""


def alexnet_features() -> nn.Sequential:
    """torchvision AlexNet `features` (indices match its state dict)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),  # 0, 1
        nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),  # 2, 3, 4
        nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 5, 6, 7
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),  # 8, 9
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),  # 10, 11
        nn.MaxPool2d(3, 2),  # 12
    )


def vgg16_features() -> nn.Sequential:
    """torchvision VGG16 `features` (config D, no batch norm; indices match its state dict)."""
    layers: list[nn.Module] = []
    c_in = 3
    cfg = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU()]
            c_in = int(v)
    return nn.Sequential(*layers)


# The five LPIPS taps: index (exclusive) of the ReLU output after which each feature is taken.
TAPS: dict[str, tuple[int, ...]] = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}
CHANNELS: dict[str, tuple[int, ...]] = {
    "alex": (64, 192, 384, 256, 256),
    "vgg": (64, 128, 256, 512, 512),
}


class NetLinLayer(nn.Module):
    """One LPIPS head: dropout + 1x1 conv to one channel, no bias (key `model.1.weight`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def normalize_tensor(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit-normalise each spatial feature vector of (B, C, H, W) along C."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance; forward(x, y) with (B, 3, H, W) in [-1, 1] -> (B,)."""

    def __init__(self, net: Net = "alex") -> None:
        super().__init__()
        if net not in TAPS:
            raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
        self.net_name = net
        self.features = alexnet_features() if net == "alex" else vgg16_features()
        self.taps = TAPS[net]
        for i, c in enumerate(CHANNELS[net]):
            self.add_module(f"lin{i}", NetLinLayer(c))
        shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        self.register_buffer("shift", shift, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        self.requires_grad_(False)
        self.eval()

    def extra_repr(self) -> str:
        return f"net={self.net_name}, version=0.1"

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five unit-normalised backbone features of (B, 3, H, W) input in [-1, 1]."""
        h = (x - self.shift) / self.scale  # (B, 3, H, W)
        out, start = [], 0
        for end in self.taps:
            h = self.features[start:end](h)  # (B, C_l, H_l, W_l)
            out.append(normalize_tensor(h))
            start = end
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per pair, sum over layers of spatially averaged weighted squared diffs."""
        assert x.shape == y.shape and x.ndim == 4 and x.shape[1] == 3, (x.shape, y.shape)
        fx, fy = self.feature_maps(x), self.feature_maps(y)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i, (a, b) in enumerate(zip(fx, fy, strict=True)):
            lin = getattr(self, f"lin{i}")
            total = total + lin((a - b).pow(2)).mean(dim=(1, 2, 3))  # (B,)
        return total

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Load a torchvision AlexNet/VGG16 state dict (`classifier.*` keys are ignored)."""
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        self.features.load_state_dict(feats, strict=True)

    def load_heads(self, state: dict[str, torch.Tensor]) -> None:
        """Load official `lpips` heads (`lin<l>.model.1.weight`)."""
        expected = {f"lin{i}.model.1.weight" for i in range(len(self.taps))}
        missing = expected - set(state)
        if missing:
            raise ValueError(f"LPIPS heads file lacks {sorted(missing)[0]} (official layout)")
        for i in range(len(self.taps)):
            getattr(self, f"lin{i}").model[1].weight.copy_(state[f"lin{i}.model.1.weight"])


def _search_dirs(root: str | Path | None) -> list[Path]:
    """Folders searched for LPIPS files, in order."""
    dirs: list[Path] = []
    if root is not None:
        dirs.append(Path(root))
    if os.environ.get(ENV_DIR):
        dirs.append(Path(os.environ[ENV_DIR]))
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    dirs.append(torch_home / "hub" / "checkpoints")
    return dirs


def _lpips_package_dir() -> Path | None:
    """The installed `lpips` package folder (found without importing it), or None."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_lpips_files(net: Net, root: str | Path | None = None) -> tuple[Path, Path]:
    """(backbone, heads) paths for `net`, or an LPIPSWeightsError naming the missing file."""
    dirs = _search_dirs(root)
    backbone_name, head_name = BACKBONE_FILES[net], HEAD_FILES[net]
    backbones = [p for d in dirs for p in (d / backbone_name, d / "checkpoints" / backbone_name)]
    head_dirs = list(dirs)
    pkg = _lpips_package_dir()
    if pkg is not None:
        head_dirs.append(pkg)
    heads = [p for d in head_dirs for p in (d / "weights" / "v0.1" / head_name, d / head_name)]
    where = ", ".join(str(d) for d in dirs)
    backbone = next((p for p in backbones if p.is_file()), None)
    if backbone is None:
        raise LPIPSWeightsError(
            f"LPIPS-{net} needs ImageNet backbone {backbone_name} (torchvision format); "
            f"put it in ${ENV_DIR} (searched: {where})"
        )
    head = next((p for p in heads if p.is_file()), None)
    if head is None:
        raise LPIPSWeightsError(
            f"LPIPS-{net} needs linear heads weights/v0.1/{head_name} (official lpips layout); "
            f"put it in ${ENV_DIR} or pip install lpips (searched: {where})"
        )
    return backbone, head


def load_lpips(net: Net = "alex", root: str | Path | None = None) -> LPIPS:
    """An LPIPS model with backbone and heads loaded from local files (see module docstring)."""
    backbone, head = find_lpips_files(net, root)
    model = LPIPS(net)
    model.load_backbone(load_torch_state(backbone))  # weights_only: never runs pickled code
    model.load_heads(load_torch_state(head))
    return model
