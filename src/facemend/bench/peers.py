"""Peer architectures for the benchmark: GFPGANv1Clean and CodeFormer, random weights.

Both come from the optional `bench` extra (`pip install --no-deps gfpgan==1.3.8
codeformer-pip==0.0.4`). Their package `__init__`s import basicsr, cv2 and friends, so only the
architecture files are loaded, through stub parent packages whose `__path__` points at the
installed folders, with small stand-ins for `ARCH_REGISTRY.register()`, `get_root_logger` and
`default_init_weights` (DESIGN §6). The stubs are removed from `sys.modules` afterwards.
Each loader returns a `Peer` (module + a call taking (B, 3, 512, 512) in [-1, 1]), or raises
`PeerUnavailableError` with a one-line install hint.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn
from torch.nn import init

INSTALL_HINT = "pip install --no-deps gfpgan==1.3.8 codeformer-pip==0.0.4"


class PeerUnavailableError(RuntimeError):
    """A peer architecture that is not installed; the message says how to install it."""


@dataclass
class Peer:
    """A peer model and how to call it on a (B, 3, 512, 512) batch in [-1, 1]."""

    name: str
    module: nn.Module
    call: Callable[[torch.Tensor], torch.Tensor]
    settings: str  # constructor / call settings, for the report


class _Registry:
    """Stand-in for basicsr's ARCH_REGISTRY: `register()` returns the class unchanged."""

    def register(self, obj=None):  # noqa: ANN001, ANN201 - mirrors basicsr's signature
        return obj if obj is not None else (lambda o: o)


def _default_init_weights(module_list, scale=1, bias_fill=0, **kwargs) -> None:  # noqa: ANN001
    """Stand-in for basicsr.archs.arch_util.default_init_weights (same rule)."""
    modules = module_list if isinstance(module_list, list) else [module_list]
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                init.kaiming_normal_(m.weight, **kwargs)
                m.weight.data *= scale
                if m.bias is not None:
                    m.bias.data.fill_(bias_fill)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                init.constant_(m.weight, 1)
                if m.bias is not None:
                    m.bias.data.fill_(bias_fill)


def _module(name: str, path: Path | None = None, **attrs: object) -> ModuleType:
    mod = ModuleType(name)
    if path is not None:
        mod.__path__ = [str(path)]
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def _installed_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # top-level: finds without importing
    if spec is None or not spec.submodule_search_locations:
        raise PeerUnavailableError(f"{package} is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def _import_with_stubs(stubs: list[ModuleType], target: str) -> ModuleType:
    """Import `target` with `stubs` in sys.modules; then drop every module loaded under them."""
    prefixes = tuple(m.__name__ for m in stubs)
    before = set(sys.modules)
    saved = {m.__name__: sys.modules.get(m.__name__) for m in stubs}
    sys.modules.update({m.__name__: m for m in stubs})
    try:
        return importlib.import_module(target)
    finally:
        for name in list(sys.modules):
            if name.startswith(prefixes) and name not in before:
                del sys.modules[name]
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def load_gfpgan() -> Peer:
    """GFPGANv1Clean with the v1.3/v1.4 'clean' settings, random weights."""
    root = _installed_dir("gfpgan")
    registry = _module("basicsr.utils.registry", ARCH_REGISTRY=_Registry())
    stubs = [
        _module("gfpgan", root), _module("gfpgan.archs", root / "archs"),
        _module("basicsr", Path(".")), _module("basicsr.utils", Path(".")), registry,
        _module("basicsr.archs", Path(".")),
        _module("basicsr.archs.arch_util", default_init_weights=_default_init_weights),
    ]
    arch = _import_with_stubs(stubs, "gfpgan.archs.gfpganv1_clean_arch")
    settings = dict(out_size=512, num_style_feat=512, channel_multiplier=2,
                    decoder_load_path=None, fix_decoder=False, num_mlp=8, input_is_latent=True,
                    different_w=True, narrow=1, sft_half=True)
    net = arch.GFPGANv1Clean(**settings).eval()

    def call(x: torch.Tensor) -> torch.Tensor:
        return net(x, return_rgb=False, randomize_noise=True)[0]

    return Peer("GFPGANv1Clean", net, call, "v1.3/1.4 clean settings, return_rgb=False")


def load_codeformer() -> Peer:
    """CodeFormer (dim_embd=512, n_layers=9, connect 32-256), called with w=0.5, adain=True."""
    root = _installed_dir("codeformer")
    logger = logging.getLogger("facemend.bench.codeformer")
    utils = _module("codeformer.basicsr.utils", root / "basicsr" / "utils",
                    get_root_logger=lambda *a, **k: logger)
    registry = _module("codeformer.basicsr.utils.registry", ARCH_REGISTRY=_Registry())
    stubs = [
        _module("codeformer", root), _module("codeformer.basicsr", root / "basicsr"),
        _module("codeformer.basicsr.archs", root / "basicsr" / "archs"), utils, registry,
    ]
    arch = _import_with_stubs(stubs, "codeformer.basicsr.archs.codeformer_arch")
    net = arch.CodeFormer(dim_embd=512, codebook_size=1024, n_head=8, n_layers=9,
                          connect_list=["32", "64", "128", "256"]).eval()

    def call(x: torch.Tensor) -> torch.Tensor:
        return net(x, w=0.5, adain=True)[0]

    return Peer("CodeFormer", net, call, "dim_embd=512, n_layers=9, w=0.5, adain=True")


PEERS: dict[str, Callable[[], Peer]] = {"GFPGANv1Clean": load_gfpgan, "CodeFormer": load_codeformer}
