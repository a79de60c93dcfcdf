"""`save_pretrained` / `from_pretrained`: safetensors weights + JSON config + format version.

A weights folder holds `model.safetensors` (every parameter and buffer of G, float32) and
`config.json` ({"format": "facemend-generator", "format_version": 1, "model": {...}, ...}).
Loading first checks the config against the safetensors header (tensor names, shapes, dtypes,
byte offsets, total bytes against the file size: `check_header`), with the model's shapes taken
from a build on the "meta" device (no memory), so a config asking for a huge model fails before
anything is allocated; then it refuses tensors holding NaN or infinite values, rebuilds G and
copies every tensor; it never unpickles. Problems
are `WeightsError`s with one line naming the folder and the fix.
"""

from __future__ import annotations

import json
import os
import site
import struct
import sysconfig
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from facemend import __version__
from facemend.config import ConfigError, ModelConfig, from_dict, to_dict
from facemend.io import atomic_write_bytes, sniff_format
from facemend.models.generator import Generator
from facemend.models.grow import grow_levels, grow_state

FORMAT = "facemend-generator"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few KB
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit on its JSON header
# ModelConfig fields in which `init_from_weights` lets the new model differ from the folder's
ADDABLE = ("full_res_skip", "num_skips", "d_channel_base", "d_max_channels", "mbstd_group",
           "d_patch_res")
WEIGHTS_ENV = "FACEMEND_WEIGHTS"  # a weights folder to use instead of the bundled default


def find_default_weights() -> Path:
    """The weights `from_pretrained()` loads when given no folder, the first of: the folder named
    by $FACEMEND_WEIGHTS; `weights/default` of the source checkout this module runs from; the copy
    that the wheel installs as data under `<prefix>/share/facemend/weights/default` (prefix: the
    environment's, else the user's, for `pip install --user`)."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    checkout = Path(__file__).resolve().parents[3] / "weights" / "default"
    prefixes = (sysconfig.get_path("data"), site.getuserbase())
    installed = [Path(p) / "share" / "facemend" / "weights" / "default" for p in prefixes]
    return next((c for c in (checkout, *installed) if (c / CONFIG_FILE).is_file()), installed[0])


DEFAULT_WEIGHTS = find_default_weights()


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
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise WeightsError(f"{p}: {p.stat().st_size} bytes, too large for a config "
                           f"(at most {MAX_CONFIG_BYTES})")
    try:
        config = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{p}: not valid JSON ({e})") from None
    except RecursionError:
        raise WeightsError(f"{p}: nested too deeply (not a facemend config)") from None
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


def check_header(folder: str | Path, cfg: ModelConfig) -> None:
    """Check `model.safetensors`'s header against the tensors `cfg` needs, allocating nothing:
    names, shapes, float32 dtype, offsets, and total bytes against the file size."""
    wfile = Path(folder) / WEIGHTS_FILE
    if not wfile.is_file():
        raise WeightsError(f"{folder}: no {WEIGHTS_FILE}")
    size = wfile.stat().st_size
    what = sniff_format(wfile)
    hint = f"; it looks like {what} (pickles are never loaded)" if what else ""
    unreadable = WeightsError(f"{wfile}: not a readable safetensors file (bad header{hint})")
    try:
        with open(wfile, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 2 <= n <= min(MAX_HEADER_BYTES, size - 8):
                raise unreadable
            header = json.loads(f.read(n))
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise unreadable from None
    if not isinstance(header, dict):
        raise unreadable
    header.pop("__metadata__", None)
    with torch.device("meta"):  # shapes only: nothing is allocated
        expected = {k: tuple(v.shape) for k, v in Generator(cfg).state_dict().items()}
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise WeightsError(f"{wfile}: tensors do not match {CONFIG_FILE} ({what})")
    data_bytes, total = size - 8 - n, 0
    for name, shape in expected.items():
        entry = header[name]
        got = entry.get("shape") if isinstance(entry, dict) else None
        if got != list(shape):
            raise WeightsError(f"{wfile}: tensor {name} has shape {got}, {CONFIG_FILE} needs "
                               f"{list(shape)}")
        offsets = entry.get("data_offsets")
        numel = 1
        for d in shape:
            numel *= d
        if entry.get("dtype") != "F32" or not (isinstance(offsets, list) and len(offsets) == 2
                                               and offsets[1] - offsets[0] == 4 * numel
                                               and offsets[0] >= 0 and offsets[1] <= data_bytes):
            raise WeightsError(f"{wfile}: tensor {name} is not {numel} float32 values inside "
                               "the file (truncated or altered)")
        total += 4 * numel
    if total != data_bytes:
        raise WeightsError(f"{wfile}: holds {data_bytes} bytes of tensor data, {CONFIG_FILE} "
                           f"needs {total} (truncated or altered)")


def from_pretrained(
    folder: str | Path | None = None, device: str | torch.device = "cpu"
) -> Generator:
    """Rebuild G from `folder` (default: the bundled `weights/default`), in eval mode."""
    folder = Path(folder) if folder is not None else DEFAULT_WEIGHTS
    cfg = load_config_from_dir(folder)
    check_header(folder, cfg)
    state = read_weights(folder)
    bad = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"{Path(folder) / WEIGHTS_FILE}: tensor {bad[0]} holds NaN or "
                           f"infinite values ({len(bad)} tensor(s)); the weights are corrupt or "
                           "from a diverged run")
    model = Generator(cfg)
    load_state_into(model, state, str(Path(folder) / WEIGHTS_FILE))
    return model.eval().to(device)


def init_from_weights(model: Generator, folder: str | Path) -> list[str]:
    """Start `model` from a weights folder of the same architecture, or of one that `model` only
    adds to; returns the names of the tensors the folder lacks (they keep their fresh
    initialisation).

    The two configs may differ only in what adds modules (`full_res_skip`, more `num_skips`, a
    `resolution` 2^k times larger: `facemend.models.grow`) or in what concerns D. Every tensor
    in the folder must exist in `model` with the same shape.
    """
    small = load_config_from_dir(folder)
    saved, wanted = to_dict(small), to_dict(model.cfg)
    where = Path(folder) / CONFIG_FILE
    for key in sorted(wanted):
        if key not in ADDABLE and key != "resolution" and saved.get(key) != wanted[key]:
            raise WeightsError(f"{where}: model.{key} is {saved.get(key)!r}, this run has "
                               f"{wanted[key]!r}; init_from needs the same value")
    try:
        levels = grow_levels(small.resolution, model.cfg.resolution)
    except ValueError as e:
        raise WeightsError(f"{where}: {e}") from None
    state = grow_state(read_weights(folder), levels)
    source = str(Path(folder) / WEIGHTS_FILE)
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise WeightsError(f"{source}: tensors the model does not have ({unexpected[:3]}); "
                           "init_from needs the same architecture or a subset of it")
    _copy_checked(model, expected, state, source)
    return sorted(set(expected) - set(state))
