"""Deterministic, resumable data order that is identical for any number of processes.

Epoch ``e`` visits ``randperm(n)`` drawn from a generator seeded with ``(seed, e)``. Global
micro-step ``j`` covers ``perm[j*B*W : (j+1)*B*W]`` (B = per-process batch, W = processes) and
process ``r`` takes its ``r``-th slice of ``B`` samples. So W processes of batch B see exactly the
samples one process of batch ``B*W`` sees, and a run resumed at micro-step ``j`` of epoch ``e``
continues with the very batches the uninterrupted run would have drawn — without consuming the
global RNG.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def epoch_permutation(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """Sample order of ``epoch`` (identity when ``shuffle`` is False)."""
    if not shuffle:
        return list(range(n))
    gen = torch.Generator()
    gen.manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=gen).tolist()


class ShardedBatchSampler(Sampler[list[int]]):
    """Yields this process's micro-batches of the current epoch, from micro-step ``start``.

    Incomplete trailing global batches are dropped, so every process runs the same number of
    micro-steps and every optimizer step sees the same global batch size.

    Args:
        num_samples: Dataset length.
        batch_size: Per-process micro-batch size.
        world_size: Number of processes.
        rank: This process's index.
        seed: Base seed of the epoch permutations.
        shuffle: Shuffle every epoch (False: dataset order).
    """

    def __init__(
        self,
        *,
        num_samples: int,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        global_batch = batch_size * world_size
        if num_samples < global_batch:
            raise ValueError(
                f"the training set has {num_samples} samples, fewer than one global batch "
                f"({batch_size} per process x {world_size} processes); lower trainer.batch_size"
            )
        self.num_samples, self.batch_size = num_samples, batch_size
        self.world_size, self.rank, self.seed, self.shuffle = world_size, rank, seed, shuffle
        self.epoch = 0
        self.start = 0

    @property
    def steps_per_epoch(self) -> int:
        """Micro-steps in one epoch."""
        return self.num_samples // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select epoch ``epoch`` and skip its first ``start`` micro-steps."""
        if not 0 <= start <= self.steps_per_epoch:
            raise ValueError(f"start {start} outside epoch of {self.steps_per_epoch} micro-steps")
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start

    def __iter__(self) -> Iterator[list[int]]:
        perm = epoch_permutation(self.num_samples, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        gb = self.batch_size * self.world_size
        for j in range(self.start, self.steps_per_epoch):
            lo = j * gb + self.rank * self.batch_size
            yield perm[lo : lo + self.batch_size]


class ShardedEvalSampler(Sampler[list[int]]):
    """Batches of the indices ``rank, rank + W, ...`` (no padding, no duplicates, last batch short).

    Args:
        num_samples: Dataset length.
        batch_size: Batch size.
        world_size: Number of processes.
        rank: This process's index.
        max_batches: Stop after this many batches (None: all).
    """

    def __init__(
        self,
        *,
        num_samples: int,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        max_batches: int | None = None,
    ) -> None:
        self.indices = list(range(rank, num_samples, world_size))
        self.batch_size = batch_size
        self.max_batches = max_batches

    def __len__(self) -> int:
        n = -(-len(self.indices) // self.batch_size)
        return n if self.max_batches is None else min(n, self.max_batches)

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(len(self)):
            yield self.indices[b * self.batch_size : (b + 1) * self.batch_size]
