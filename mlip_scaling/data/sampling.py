"""Batch order of training: per-epoch shuffled batches (DDP-aware) and FLOP-probe batches."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["epoch_batches", "batches_per_epoch", "sample_batches"]


def batches_per_epoch(n_items: int, local_batch: int, world: int) -> int:
    """Batches each rank runs per epoch (DistributedSampler pads to equal shares)."""
    return math.ceil(math.ceil(n_items / world) / local_batch)


def epoch_batches(
    n_items: int, local_batch: int, epoch: int, seed: int, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """This rank's batches (lists of item positions) for ``epoch``; same for every resume."""
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(range(n_items), num_replicas=world, rank=rank, shuffle=True,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[k:k + local_batch] for k in range(0, len(order), local_batch)]


def sample_batches(n_items: int, batch_size: int, seed: int) -> list[list[int]]:
    """A few batches of different sizes (for the FLOP model), drawn without global RNG."""
    rng = np.random.default_rng(seed)
    sizes = sorted({1, max(1, batch_size // 4), max(1, batch_size // 2), batch_size})
    sizes = [min(s, n_items) for s in sizes]
    return [rng.choice(n_items, size=s, replace=False).tolist() for s in sizes]
