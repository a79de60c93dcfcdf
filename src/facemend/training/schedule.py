"""Which images each step sees, and the learning rate at each step: pure functions of the step
(and seed, rank), so resume is exact."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from facemend.data import one_thread_per_worker


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of n items for one epoch (same on every rank)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))


class StepBatches(Sampler[list[tuple[int, int]]]):
    """Yields, for steps start..stop-1, this rank's batch as (epoch, index) pairs.

    Each epoch is a seeded permutation cut into world * batch sized pieces; rank r takes the r-th
    slice of each piece (DistributedSampler's sharding, without its hidden iterator state).
    """

    def __init__(
        self, n: int, batch: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1
    ) -> None:
        self.per_step = batch * world
        if n < self.per_step:
            raise ValueError(f"{n} training images are fewer than batch x processes = "
                             f"{self.per_step}: add images or lower train.batch_size")
        self.n, self.batch, self.seed = n, batch, seed
        self.start, self.stop, self.rank = start, stop, rank
        self.steps_per_epoch = n // self.per_step

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def batch_at(self, step: int) -> list[tuple[int, int]]:
        """The (epoch, index) pairs of this rank's batch at a global step."""
        epoch, k = divmod(step, self.steps_per_epoch)
        perm = epoch_permutation(self.n, self.seed, epoch)
        lo = k * self.per_step + self.rank * self.batch
        return [(epoch, int(i)) for i in perm[lo : lo + self.batch]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.stop):
            yield self.batch_at(step)


class EpochIndexed(Dataset):
    """Wraps a dataset with `set_epoch`, so an (epoch, index) key selects both (worker-safe).

    In a DataLoader worker, the first item also limits torch and OpenCV to one thread each.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._threads_limited = False  # per process: each worker gets its own copy

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        if not self._threads_limited and get_worker_info() is not None:
            one_thread_per_worker()
            self._threads_limited = True
        epoch, index = key
        self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        return self.dataset[index]


def step_seed(seed: int, step: int, rank: int, stream: int) -> int:
    """A distinct, reproducible seed for one random stream at one step on one rank."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729 + stream * 15_485_863) % (2**63 - 1)


def lr_factor(step: int, steps: int, decay_from: int, final: float) -> float:
    """The learning-rate multiplier at `step`: 1 until `decay_from` (0 = never decay), then a half
    cosine down to `final` at the last step (`steps` - 1), and `final` after that."""
    if decay_from <= 0 or step < decay_from:
        return 1.0
    t = min(1.0, (step - decay_from) / max(1, steps - 1 - decay_from))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))
