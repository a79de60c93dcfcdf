"""VGG19 feature network for the perceptual loss (eq. 10), loading torchvision-format weights.

Our own definition (no torchvision): `features` is an `nn.Sequential` with torchvision's exact
layer indices, so a torchvision `vgg19-dcbb9e9d.pth` state dict loads key for key
(`features.N.weight/bias`; `classifier.*` keys are ignored). Nothing is downloaded at run time.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
WEIGHTS_ENV = "FACEMEND_VGG19"
WEIGHTS_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"

# torchvision's vgg19 "E" configuration: channel counts, "M" = 2x2 max-pool.
_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                               512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _layer_names() -> list[str]:
    """Names of the `features` layers in order: conv1_1, relu1_1, ..., pool5 (BasicSR naming)."""
    names: list[str] = []
    block, idx = 1, 1
    for v in _CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 1
        else:
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
            idx += 1
    return names


LAYER_NAMES: tuple[str, ...] = tuple(_layer_names())  # index i <-> features.i


class VGG19WeightsError(RuntimeError):
    """A VGG19 weights file that is missing or is not torchvision's vgg19 state dict."""


class VGG19WeightsMissingError(VGG19WeightsError, FileNotFoundError):
    """No VGG19 weights file at the given path (or none given)."""


class VGG19(nn.Module):
    """VGG19 convolutional trunk (torchvision layout); forward returns the named features asked."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU()]
                c_in = int(v)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """ImageNet-normalised (B, 3, H, W) -> {name: (B, C_l, H_l, W_l)} for the named layers."""
        assert x.ndim == 4 and x.shape[1] == 3, x.shape
        unknown = [n for n in layers if n not in LAYER_NAMES]
        if unknown:
            raise ValueError(f"unknown VGG19 layer '{unknown[0]}'; known: {', '.join(LAYER_NAMES)}")
        last = max(LAYER_NAMES.index(n) for n in layers)
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features[: last + 1]):
            x = layer(x)
            if LAYER_NAMES[i] in layers:
                out[LAYER_NAMES[i]] = x
        return out


def _how_to_get() -> str:
    return (f"download torchvision's ImageNet VGG19 ({WEIGHTS_URL}) on a machine with internet, "
            f"copy it here and pass its path (train.vgg19_weights) or set {WEIGHTS_ENV}")


def check_state_dict(state: dict[str, torch.Tensor], model: nn.Module, where: str) -> None:
    """Raise VGG19WeightsError naming the first missing/unexpected key or shape mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: '{missing[0]}')")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: '{unexpected[0]}')")
        raise VGG19WeightsError(f"{where}: not a torchvision vgg19 state dict: "
                                f"{', '.join(parts)}; expected {WEIGHTS_FILE}")
    for k, v in expected.items():
        got = state[k]
        if not isinstance(got, torch.Tensor) or got.shape != v.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise VGG19WeightsError(f"{where}: '{k}' has shape {shape}, expected "
                                    f"{tuple(v.shape)}; expected {WEIGHTS_FILE}")


def load_vgg19(path: str | Path | None = None) -> VGG19:
    """Frozen eval-mode VGG19 from a torchvision-format file (path, else $FACEMEND_VGG19)."""
    if path is None:
        path = os.environ.get(WEIGHTS_ENV)
    if not path:
        raise VGG19WeightsMissingError(
            f"VGG19 weights not given: need {WEIGHTS_FILE}; {_how_to_get()}")
    p = Path(path)
    if not p.is_file():
        raise VGG19WeightsMissingError(
            f"{p}: VGG19 weights file not found (expected {WEIGHTS_FILE}); {_how_to_get()}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise VGG19WeightsError(f"{p}: cannot read as a torch state dict ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}); expected "
                                f"{WEIGHTS_FILE}") from None
    if not isinstance(state, dict):
        raise VGG19WeightsError(f"{p}: holds a {type(state).__name__}, not a state dict; "
                                f"expected {WEIGHTS_FILE}")
    state = {k: v for k, v in state.items() if not str(k).startswith("classifier.")}
    model = VGG19()
    check_state_dict(state, model, str(p))
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model
