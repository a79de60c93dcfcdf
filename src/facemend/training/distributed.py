"""DDP plumbing: one code path for one process and for `torchrun` (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank, world size and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cpu' / 'cuda' / 'cuda:N' as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available")
    return dev


def setup(device: str = "auto") -> Dist:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, local_rank=local, device=dev)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes, in place (used for the EMA codebook statistics)."""
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def in_sync(d: Dist, modules: list[torch.nn.Module]) -> bool:
    """True when every rank holds the same parameters and buffers (checksums compared)."""
    sums = torch.stack([
        torch.stack([t.detach().double().sum() for t in m.state_dict().values()]).sum()
        for m in modules
    ]).to(d.device)  # (M,)
    if not d.enabled:
        return True
    gathered = [torch.zeros_like(sums) for _ in range(d.world)]
    dist.all_gather(gathered, sums)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def barrier(d: Dist) -> None:
    """Wait for every process (no-op in a single process)."""
    if d.enabled:
        dist.barrier()


def teardown(d: Dist) -> None:
    """Destroy the process group if this run created one."""
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
