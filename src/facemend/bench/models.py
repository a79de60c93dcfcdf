"""Per-model measurements: FLOPs, interleaved latency, batch sweep, training step, peak RSS.

A model under test is an `Entry`: a name, its input side H and a call (B, 3, H, H) -> image.
facemend models run through `model_restorer` (the real inference path: inference_mode,
channels_last, seeded noise at noise_scale 1); peers through their own forward under
inference_mode; `onnx:default` through `OnnxRestorer` on onnxruntime. FLOPs come from
`torch.utils.flop_counter.FlopCounterMode`, which counts a multiply-add as 2 FLOPs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from facemend.bench.machine import peak_rss_mb
from facemend.config import ModelConfig, RunConfig, load_config
from facemend.models.generator import Generator

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"
FLOP_CONVENTION = "torch.utils.flop_counter.FlopCounterMode; a multiply-add counts as 2 FLOPs"
Call = Callable[[torch.Tensor], torch.Tensor]
PAPER_BILINEAR = "paper-512-bilinear"  # paper-512 with bilinear-resize upsampling
FACEMEND_MODELS = ("default", "paper-512", PAPER_BILINEAR)


@dataclass
class Entry:
    """One model (or precision variant) under test."""

    name: str
    H: int
    call: Call
    params: int
    source: str
    module: torch.nn.Module | None = None  # torch models: FLOPs are counted, G can be trained
    times: list[float] = field(default_factory=list)  # interleaved batch-1 seconds
    gflops: float | None = None  # per face, counted during the warm-up call


def model_config(path: str | Path) -> ModelConfig:
    """The `model:` section of a run config YAML."""
    return load_config(RunConfig, Path(path), []).model


def build_facemend(
    name: str, config: str | None = None, weights: str | None = None
) -> tuple[Generator, str]:
    """(G in eval mode, where it came from) for a FACEMEND_MODELS name (512s: random, seed 0)."""
    if name == "default":
        from facemend.models.pretrained import CONFIG_FILE, DEFAULT_WEIGHTS, from_pretrained

        folder = Path(weights) if weights else DEFAULT_WEIGHTS
        if (folder / CONFIG_FILE).is_file():
            shown = folder.resolve()  # inside the project: reported as `weights/...`
            shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
            return from_pretrained(folder), f"weights {shown}"
        cfg_path = Path(config) if config else CONFIGS / "recipes" / "reconstruction-base.yaml"
        torch.manual_seed(0)
        return (Generator(model_config(cfg_path)).eval(),
                f"random init of {cfg_path.name} ({folder} not found)")
    if name in ("paper-512", PAPER_BILINEAR):
        cfg = model_config(CONFIGS / "paper-512.yaml")
        if name == PAPER_BILINEAR:  # GFPGANv1Clean's upsampling, for the side-by-side record
            cfg = dataclasses.replace(cfg, upsample="bilinear")
        torch.manual_seed(0)
        return Generator(cfg).eval(), f"random init, model.upsample={cfg.upsample}"
    raise ValueError(f"unknown facemend model {name!r}")


def n_params(module: torch.nn.Module) -> int:
    """Number of parameters (buffers such as codebooks not counted)."""
    return sum(p.numel() for p in module.parameters())


def facemend_entry(name: str, G: Generator, source: str, bf16: bool = False) -> Entry:
    """An Entry calling G through the inference path (`model_restorer`)."""
    from facemend.inference.restore import model_restorer

    call = model_restorer(G, noise_scale=1.0, seed=0, bf16=bf16)
    return Entry(name + (" bf16" if bf16 else ""), G.cfg.resolution, call, n_params(G), source, G)


def peer_entry(peer, bf16: bool = False) -> Entry:  # noqa: ANN001 - a bench.peers.Peer
    """An Entry calling a peer's forward under inference_mode (and bf16 autocast)."""

    def call(x: torch.Tensor) -> torch.Tensor:
        amp = torch.autocast("cpu", torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            return peer.call(x).float()

    return Entry(peer.name + (" bf16" if bf16 else ""), 512, call, n_params(peer.module),
                 f"random init; {peer.settings}", peer.module)


def onnx_entry(path: Path, params: int) -> Entry:
    """An Entry running an ONNX export (noise as inputs, drawn like torch) on onnxruntime."""
    from facemend.inference.onnx_backend import OnnxRestorer

    restorer = OnnxRestorer(path, noise_scale=1.0, seed=0, threads=torch.get_num_threads())
    return Entry("onnx:default", restorer.size, restorer, params,
                 f"onnxruntime CPU, {path.name}")


def count_gflops(fn: Call, x: torch.Tensor) -> float:
    """GFLOPs of one call on x (multiply-add = 2 FLOPs), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        fn(x)
    return counter.get_total_flops() / 1e9


def batch_input(B: int, H: int) -> torch.Tensor:
    """A fixed (B, 3, H, H) input in [-1, 1]."""
    return torch.rand(B, 3, H, H, generator=torch.Generator().manual_seed(B)) * 2 - 1


def timed(fn: Call, x: torch.Tensor) -> float:
    """Seconds for one call."""
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


def time_interleaved(entries: list[Entry], repeats: int) -> None:
    """Batch-1 latency: one warm-up each (FLOPs counted), then `repeats` rounds in turn."""
    inputs = {e.H: batch_input(1, e.H) for e in entries}
    for e in entries:
        if e.module is not None:  # torch ops only: FlopCounterMode cannot see onnxruntime
            e.gflops = count_gflops(e.call, inputs[e.H])
        else:
            e.call(inputs[e.H])
    for _ in range(repeats):
        for e in entries:
            e.times.append(timed(e.call, inputs[e.H]))


def median_ratio(a: Entry, b: Entry) -> float:
    """Median over rounds of a's time / b's time (paired, so drift cancels)."""
    return statistics.median(x / y for x, y in zip(a.times, b.times))


def sweep_batches(e: Entry, batches: tuple[int, ...], repeats: int) -> dict[int, float]:
    """Faces/s per batch size (best of `repeats`); batch 1 from the interleaved median."""
    out = {1: 1.0 / statistics.median(e.times)} if e.times else {}
    for B in batches:
        if B == 1 and out:
            continue
        x = batch_input(B, e.H)
        out[B] = B / min(timed(e.call, x) for _ in range(repeats))
    return out


def train_images_per_s(cfg: ModelConfig, batch: int, steps: int) -> float:
    """Images/s of G+D training steps (L1 + adversarial + VQ, fp32 eager, 1 warm-up step)."""
    from facemend.losses import adversarial_g, diff_augment, discriminator_loss, l1_loss
    from facemend.models.discriminator import Discriminator

    torch.manual_seed(0)
    G, D = Generator(cfg).train(), Discriminator(cfg).train()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    y = batch_input(batch, cfg.resolution)
    x = (y + 0.2 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)

    def step() -> None:
        G.update_codebooks(y)
        fake, vq = G(x, return_vq=True)
        loss_g = adversarial_g(D(diff_augment(fake))) + l1_loss(fake, y) + 0.25 * vq
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        loss_d, _ = discriminator_loss(D(diff_augment(y)), D(diff_augment(fake.detach())))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def peak_rss_child(name: str, threads: int, config: str | None = None,
                   weights: str | None = None, onnx: str | None = None) -> float | None:
    """Peak RSS (MiB) of a fresh process that builds `name` and restores one face."""
    cmd = [sys.executable, "-m", "facemend.bench.models", name, "--threads", str(threads)]
    for flag, value in (("--config", config), ("--weights", weights), ("--onnx", onnx)):
        if value:
            cmd += [flag, value]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if out.returncode != 0:
        return None
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def _rss_main() -> None:
    """Child entry: build one model, restore one face at batch 1, print peak RSS as JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--config")
    p.add_argument("--weights")
    p.add_argument("--onnx")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.name in FACEMEND_MODELS:
        G, source = build_facemend(a.name, a.config, a.weights)
        entry = facemend_entry(a.name, G, source)
    elif a.name == "onnx:default":
        entry = onnx_entry(Path(a.onnx), 0)
    else:
        from facemend.bench.peers import PEERS

        entry = peer_entry(PEERS[a.name]())
    entry.call(batch_input(1, entry.H))
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1)}))


if __name__ == "__main__":
    _rss_main()
