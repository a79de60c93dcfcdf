"""`save_pretrained` / `from_pretrained`: safetensors weights + JSON config + format version.

A weights folder holds `model.safetensors` (every parameter and buffer of G, float32) and
`config.json` ({"format": "facemend-generator", "format_version": 1, "model": {...}, ...}).
Loading rebuilds G from the config, then checks every tensor name and shape before copying; it
never unpickles. Problems are `WeightsError`s with one line naming the folder and the fix.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from facemend import __version__
from facemend.config import ConfigError, ModelConfig, from_dict, to_dict
from facemend.io import atomic_write_bytes, sniff_format
from facemend.models.generator import Generator
from facemend.models.layers import EqualConv2d, EqualLinear, ModulatedConv2d

FORMAT = "facemend-generator"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[3] / "weights" / "default"
# ModelConfig fields in which `init_from_weights` lets the new model differ from the folder's
GROWABLE = ("full_res_skip", "num_skips", "d_channel_base", "d_max_channels", "mbstd_group")
# ... and those it may raise, as long as no resolution gets fewer channels (`_widen`)
WIDENABLE = ("channel_base", "max_channels")


class WeightsError(ValueError):
    """A weights folder that cannot be loaded; str() names the folder and the problem."""


def save_pretrained(
    model: Generator, folder: str | Path, meta: dict[str, Any] | None = None
) -> None:
    """Write `model.safetensors` + `config.json` into `folder`, each atomically."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    # every tensor as float32 (bool/int buffers too): one dtype, readable by any safetensors tool
    state = {k: v.detach().to("cpu", torch.float32).contiguous()
             for k, v in model.state_dict().items()}
    atomic_write_bytes(out / WEIGHTS_FILE, save(state, metadata={"format": FORMAT}))
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "facemend_version": __version__,
        "model": to_dict(model.cfg),
        "meta": meta or {},
    }
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(out / CONFIG_FILE, text.encode())


def read_config(folder: str | Path) -> dict[str, Any]:
    """Read and validate `config.json` of a weights folder."""
    p = Path(folder) / CONFIG_FILE
    if not p.is_file():
        raise WeightsError(f"{folder}: no {CONFIG_FILE} (not a facemend weights folder)")
    try:
        config = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise WeightsError(f"{p}: not a facemend generator config (format != {FORMAT!r})")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"{p}: format_version {version!r} is not supported (this facemend reads "
            f"{FORMAT_VERSION}); upgrade facemend or re-export the weights"
        )
    return config


def load_config_from_dir(folder: str | Path) -> ModelConfig:
    """The ModelConfig stored in a weights folder."""
    config = read_config(folder)
    try:
        return from_dict(ModelConfig, config.get("model", {}), "model")
    except ConfigError as e:
        raise WeightsError(f"{Path(folder) / CONFIG_FILE}: {e}") from None


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy a flat state dict into `model` after checking every name and shape."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise WeightsError(f"{source}: tensors do not match the config ({what})")
    _copy_checked(model, expected, state, source)


def _copy_checked(
    model: torch.nn.Module, expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
    source: str,
) -> None:
    """Copy `state` (names already checked: a subset of `expected`, model.state_dict()) into
    `model` after checking every shape; tensors `state` lacks keep their values."""
    for name, ref in expected.items():
        if name in state and tuple(state[name].shape) != tuple(ref.shape):
            raise WeightsError(
                f"{source}: tensor {name} has shape {tuple(state[name].shape)}, "
                f"expected {tuple(ref.shape)}"
            )
    # names were checked by the caller; strict=False lets a subset keep the rest
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights folder's `model.safetensors` (never unpickled)."""
    wfile = Path(folder) / WEIGHTS_FILE
    if not wfile.is_file():
        raise WeightsError(f"{folder}: no {WEIGHTS_FILE}")
    try:
        state = load_file(str(wfile))
    except (SafetensorError, OSError, ValueError) as e:
        what = sniff_format(wfile)
        hint = f"; it looks like {what} (pickles are never loaded)" if what else ""
        raise WeightsError(f"{wfile}: not a readable safetensors file ({e}{hint})") from None
    return state


def from_pretrained(
    folder: str | Path | None = None, device: str | torch.device = "cpu"
) -> Generator:
    """Rebuild G from `folder` (default: the bundled `weights/default`), in eval mode."""
    folder = Path(folder) if folder is not None else DEFAULT_WEIGHTS
    cfg = load_config_from_dir(folder)
    state = read_weights(folder)
    model = Generator(cfg)
    load_state_into(model, state, str(Path(folder) / WEIGHTS_FILE))
    return model.eval().to(device)


def init_from_weights(model: Generator, folder: str | Path) -> tuple[list[str], list[str]]:
    """Start `model` from a weights folder whose architecture it extends; returns the names of
    the tensors the folder lacks (they keep their fresh initialisation) and of those widened.

    Every tensor in the folder must exist in `model` with the same shape, and the two configs may
    differ only in what adds modules (`full_res_skip`, more `num_skips`, a `resolution` 2^k times
    larger), in wider channels, or in what concerns D: a model that only adds can start from a
    smaller one, a different one cannot. Growing the resolution adds k encoder blocks and decoder
    levels on top; the smaller model's encoder blocks move down k places and its fromRGB layer is
    dropped (the larger model's feature at the old H comes from its new top block). Widening
    keeps the function exactly (`_widen`).
    """
    small = load_config_from_dir(folder)
    saved, wanted = to_dict(small), to_dict(model.cfg)
    where = Path(folder) / CONFIG_FILE
    wider = all(model.cfg.channels(2**k) >= small.channels(2**k)
                for k in range(2, small.log2_res + 1))
    for key in sorted(wanted):
        if key in GROWABLE or key == "resolution" or saved.get(key) == wanted[key]:
            continue
        if key in WIDENABLE and wider and not small.quantize and small.fusion != "concat":
            continue  # codebooks and [p, q] concatenations do not embed in wider ones exactly
        need = ("the same value or, with model.quantize=false and a fusion other than concat, "
                "at least as many channels at every resolution" if key in WIDENABLE
                else "the same value")
        raise WeightsError(f"{where}: model.{key} is {saved.get(key)!r}, "
                           f"this run has {wanted[key]!r}; init_from needs {need}")
    if wanted["resolution"] < saved["resolution"]:  # both are powers of two (ModelConfig)
        raise WeightsError(f"{where}: model.resolution is {saved['resolution']}, this run has "
                           f"{wanted['resolution']}; init_from needs the same or a larger one")
    state = read_weights(folder)
    levels = (wanted["resolution"] // saved["resolution"]).bit_length() - 1
    if levels:
        state = _shift_encoder(state, levels)
    source = str(Path(folder) / WEIGHTS_FILE)
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise WeightsError(f"{source}: tensors the model does not have ({unexpected[:3]}); "
                           "init_from needs the same architecture or a subset of it")
    widened = _widen(model, expected, state)
    _copy_checked(model, expected, widened, source)
    grown = [k for k, t in state.items() if widened[k] is not t]
    return sorted(set(expected) - set(state)), sorted(grown)


def _widen(
    model: Generator, expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A narrower G's tensors embedded in `model`'s wider ones (`expected`, its state_dict) so
    that G computes the same image.

    Each smaller tensor fills the leading corner of the wider model's freshly initialised one
    (Net2Net-style, zero variant). Per equalized weight (out, in, ...): the old outputs read the
    old inputs, rescaled by sqrt(in_new / in_old) so that weight * 1/sqrt(fan_in) is unchanged,
    and get zero weight from the new inputs; the new outputs keep their random weights, so they
    compute new features that the zero weights start to read after the first step. 1-D tensors
    (biases, noise strengths, style biases) keep their old entries and fresh new ones. Demodulation
    sums over the inputs, whose new zero weights add nothing. Shapes that do not fit this pattern
    are passed through unchanged for `_copy_checked` to report.
    """
    equalized = {f"{n}.weight" for n, m in model.named_modules()
                 if isinstance(m, EqualLinear | EqualConv2d | ModulatedConv2d)}
    out: dict[str, torch.Tensor] = {}
    for name, old in state.items():
        new = expected.get(name)
        fits = (new is not None and new.ndim == old.ndim and new.shape != old.shape
                and all(o <= n for o, n in zip(old.shape, new.shape)))
        if not fits or (old.ndim > 1 and name not in equalized):
            out[name] = old
            continue
        t = new.detach().to(torch.float32).clone()
        if old.ndim == 1:
            t[: old.shape[0]] = old
        else:
            o, i = old.shape[:2]
            t[:o, i:] = 0.0  # (o, in_new - i, ...): the old outputs ignore the new inputs
            t[:o, :i] = old * math.sqrt(new.shape[1] / i)
        out[name] = t
    return out


def _shift_encoder(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """A smaller G's tensors renamed for a G with `levels` more resolutions: encoder block i
    becomes block i + levels, fromRGB is dropped; the decoder's names count from 4x4 up and
    the skips are named by resolution, so they keep their names."""
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if name.startswith("encoder.from_rgb."):
            continue
        if name.startswith("encoder.blocks."):
            index, rest = name.removeprefix("encoder.blocks.").split(".", 1)
            name = f"encoder.blocks.{int(index) + levels}.{rest}"
        out[name] = t
    return out
