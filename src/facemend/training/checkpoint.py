"""Training checkpoints: one safetensors file holding G, D, EMA of G, optimiser states, RNG state;
JSON metadata (format version, step, config, optimiser hyperparameters) in its header.

Written to a temp file in the same folder and renamed, so a crash (even SIGKILL) mid-save leaves
the previous checkpoint intact (the next save deletes the temp file such a crash leaves behind).
Loading never unpickles and validates every tensor name and shape; a truncated file, a pickle,
a safetensors file from elsewhere or random bytes is a one-line CheckpointError. The header
holds a SHA-256 of every tensor's bytes (`tensor_sha256`), checked on load, so flipped bytes in
the tensor data are found; a checkpoint whose model weights hold NaN/inf is refused too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from facemend.io import atomic_write_bytes, remove_stale_temps, sniff_format
from facemend.models.pretrained import WeightsError, load_state_into

FORMAT = "facemend-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(WeightsError):
    """A checkpoint that cannot be loaded; str() names the file and the problem."""


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class TrainingState:
    """Everything a run needs to continue exactly."""

    step: int
    images_seen: int
    modules: dict[str, torch.nn.Module]  # "G", "D", "G_ema"
    optimizers: dict[str, torch.optim.Optimizer]  # "G", "D"
    extra: dict[str, Any]  # JSON-safe (config, bad-step counters, ...)


def _flatten_optimizer(name: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"opt.{name}/{idx}/{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(path: str | Path, state: TrainingState) -> None:
    """Write `state` atomically to `path` (a .safetensors file)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in state.modules.items():
        for key, val in module.state_dict().items():
            tensors[f"{name}/{key}"] = val.detach().cpu().contiguous()
    opt_meta = {}
    for name, opt in state.optimizers.items():
        t, meta = _flatten_optimizer(name, opt)
        tensors.update(t)
        opt_meta[name] = meta
    tensors["rng/torch"] = torch.get_rng_state()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": state.step,
        "images_seen": state.images_seen,
        "optimizers": opt_meta,
        "extra": state.extra,
        "tensor_sha256": tensor_digest(tensors),
    }
    data = save(tensors, metadata={"facemend": json.dumps(header)})
    remove_stale_temps(path)  # left by a save that was killed
    atomic_write_bytes(path, data)


def _unreadable(p: Path, e: Exception) -> CheckpointError:
    """The error for a file safetensors cannot parse, saying what it looks like instead."""
    what = sniff_format(p)
    if what in ("a Python pickle", "a zip archive (torch.save format)"):
        return CheckpointError(f"{p}: {what}, not a facemend checkpoint; facemend checkpoints "
                               "are safetensors and pickles are never loaded")
    hint = f"; it looks like {what}" if what else ""
    return CheckpointError(f"{p}: truncated, corrupt or not a safetensors checkpoint "
                           f"({str(e).splitlines()[0] if str(e) else type(e).__name__}{hint})")


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a checkpoint (format checked), without loading tensors."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise _unreadable(p, e) from None
    try:
        header = json.loads(meta["facemend"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{p}: a safetensors file without a facemend header (from another "
                              "program?), not a facemend training checkpoint") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a facemend training checkpoint")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{p}: format_version {header.get('format_version')!r} not "
                              f"supported (expected {FORMAT_VERSION})")
    return header


def load_checkpoint(path: str | Path, state: TrainingState, map_location: str = "cpu") -> None:
    """Fill `state` (modules and optimisers already built from the config) from `path`."""
    p = Path(path)
    header = read_header(p)
    try:
        with safe_open(str(p), framework="pt", device=map_location) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise _unreadable(p, e) from None
    digest = header.get("tensor_sha256")
    if digest is not None and tensor_digest(tensors) != digest:
        raise CheckpointError(f"{p}: tensor data does not match its checksum (the file was "
                              "altered or damaged on disk); resume from another checkpoint")
    for name, module in state.modules.items():
        prefix = f"{name}/"
        sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        bad = next((k for k, v in sub.items() if v.is_floating_point()
                    and not bool(torch.isfinite(v).all())), None)
        if bad is not None:
            raise CheckpointError(f"{p}: {name} weights hold NaN/inf values ({bad}); this "
                                  "checkpoint cannot be resumed from")
        try:
            load_state_into(module, sub, f"{p} [{name}]")
        except WeightsError as e:
            raise CheckpointError(str(e)) from None
    for name, opt in state.optimizers.items():
        meta = header["optimizers"].get(name)
        if meta is None:
            raise CheckpointError(f"{p}: no optimiser state for {name}")
        st: dict[int, dict[str, Any]] = {}
        prefix = f"opt.{name}/"
        for k, v in tensors.items():
            if k.startswith(prefix):
                idx, key = k[len(prefix):].split("/", 1)
                st.setdefault(int(idx), {})[key] = v
        for idx, scalars in meta["scalars"].items():
            st.setdefault(int(idx), {}).update(scalars)
        try:
            opt.load_state_dict({"state": st, "param_groups": meta["param_groups"]})
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{p}: optimiser state for {name} does not match ({e})") from None
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"].to(torch.uint8).cpu())
    state.step = int(header["step"])
    state.images_seen = int(header["images_seen"])
    state.extra = header.get("extra", {})


def export_ema(path: str | Path, out: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write the EMA generator of a training checkpoint as a weights folder (save_pretrained),
    with the discriminator beside it (DISCRIMINATOR_FILE, for train.init_d_from)."""
    from facemend.config import RunConfig, from_dict
    from facemend.models.generator import Generator
    from facemend.models.pretrained import save_pretrained

    header = read_header(path)
    cfg = from_dict(RunConfig, header.get("extra", {}).get("config", {}))
    G_ema = Generator(cfg.model)
    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            sub = {k[len("G_ema/"):]: f.get_tensor(k) for k in names if k.startswith("G_ema/")}
            d_sub = {k[len("D/"):]: f.get_tensor(k) for k in names if k.startswith("D/")}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({e})") from None
    load_state_into(G_ema, sub, f"{path} [G_ema]")
    info = {"steps": header["step"], "images_seen": header["images_seen"], **(meta or {})}
    save_pretrained(G_ema.eval(), out, meta=info)
    if d_sub:  # so that a run on another machine can continue with this D (train.init_d_from)
        atomic_write_bytes(Path(out) / DISCRIMINATOR_FILE, save(d_sub, metadata={
            "facemend": json.dumps({"format": "facemend-discriminator", "format_version": 1,
                                    "model": header.get("extra", {}).get("config", {})
                                    .get("model", {})})}))
    return Path(out)


DISCRIMINATOR_FILE = "discriminator.safetensors"


def load_discriminator(D: torch.nn.Module, path: str | Path) -> Path:
    """Load D's weights from a weights folder's discriminator.safetensors (or that file).

    A D saved without a patch head (model.d_patch_res = 0) starts a D that has one: the trunk
    and the global head load, the patch head keeps its fresh initialisation.
    """
    p = Path(path)
    if p.is_dir():
        p = p / DISCRIMINATOR_FILE
    if not p.is_file():
        raise CheckpointError(f"{p}: no discriminator weights (written by "
                              "`facemend train --out RUN --export-ema DIR`)")
    try:
        with safe_open(str(p), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise _unreadable(p, e) from None
    if getattr(D, "patch", None) is not None and not any(k.startswith("patch.") for k in tensors):
        tensors |= {k: v for k, v in D.state_dict().items() if k.startswith("patch.")}
    try:
        load_state_into(D, tensors, f"{p} [D]")
    except WeightsError as e:
        raise CheckpointError(str(e)) from None
    return p
