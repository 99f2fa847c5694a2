"""Training data: dataset resolution, splits, in-memory prepared structures, batch order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import AtomicData, from_atoms
from mlip_scaling.data.embedded import default_data_path
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.io_utils import file_hash
from mlip_scaling.training.loss import HAS_STRESS

__all__ = ["default_data_path", "open_source", "source_info", "make_split", "split_size", "prepare",
           "epoch_batches", "batches_per_epoch", "sample_batches"]


def open_source(path: str | Path | None) -> tuple[Any, Path]:
    """Open a dataset file (``None`` = the embedded default) -> (indexable source, path)."""
    embedded = path is None
    path = default_data_path() if embedded else Path(path)
    if not path.exists():
        hint = " (the embedded dataset is missing: regenerate it with `make data` or pass --data)"
        raise DataError(f"{path}: no such dataset file" + (hint if embedded else ""))
    from mlip_scaling.data.readers import open_dataset

    return open_dataset(path), path


def source_info(source: Any, path: Path | None) -> dict[str, Any]:
    """Name, content hash and oracle of a dataset (from its metadata when it is a store)."""
    meta = dict(getattr(source, "metadata", {}) or {})
    return {
        "dataset": str(path) if path is not None else None,
        "dataset_name": meta.get("name", path.stem if path is not None else "in-memory"),
        "dataset_hash": meta.get("content_hash") or (
            file_hash(path) if path is not None and path.is_file() else None),
        "oracle": meta.get("oracle"),
    }


def split_size(size: float) -> int | float:
    """A split size as ``split_indices`` reads it: a count when >= 1, else a fraction."""
    return int(size) if size >= 1 else float(size)


def make_split(
    n: int, val_size: float, test_size: float, seed: int, train_size: int | None, where: str
) -> dict[str, np.ndarray]:
    """Train (nested subset), val and test indices; errors name the dataset ``where``."""
    from mlip_scaling.data.splits import nested_subset, split_indices

    try:
        split = split_indices(n, val_size=split_size(val_size), test_size=split_size(test_size),
                              seed=seed)
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot split {n} structures: {exc}") from None
    train = split["train"]
    if train_size is not None:
        if train_size > len(train):
            raise ConfigError(f"--train-size {train_size} exceeds the {len(train)} structures "
                              f"of the training split of {where}")
        train = nested_subset(train, train_size, seed=seed)
    if len(train) == 0:
        raise ConfigError(f"{where}: the training subset is empty")
    if len(split["val"]) == 0:
        raise ConfigError(f"{where}: the validation split is empty (raise --val-size)")
    return {"train": np.asarray(train), "val": np.asarray(split["val"]),
            "test": np.asarray(split["test"])}


def _to_data(item: Any) -> AtomicData:
    if isinstance(item, Atoms):
        return from_atoms(item, labels=True)
    return dict(item)


def prepare(
    source: Any,
    indices: Sequence[int],
    cutoff: float,
    need: dict[str, float],
    where: str,
    dtype: torch.dtype = torch.float32,
) -> list[AtomicData]:
    """Load ``source[indices]`` with neighbour lists, cast to ``dtype``, labels checked.

    ``need`` maps label -> loss weight; a label with nonzero weight must be present
    (stress in at least one structure; absent stress is masked with ``has_stress``).
    """
    transform = NeighborListTransform(cutoff)
    items = []
    for idx in indices:
        data = _to_data(source[int(idx)])
        for label in (keys.ENERGY, keys.FORCES):
            if label not in data and (label == keys.ENERGY or need.get(label, 0) > 0):
                raise DataError(f"{where}: structure {int(idx)} has no {label} label (needed by "
                                f"the loss; weight {need.get(label, 'required')})")
        bad = [k for k in keys.LABEL_FIELDS if k in data and not torch.isfinite(data[k]).all()]
        if bad:
            raise DataError(f"{where}: structure {int(idx)} has a non-finite {bad[0]} label")
        data[HAS_STRESS] = torch.tensor([keys.STRESS in data])
        if keys.STRESS not in data:
            data[keys.STRESS] = torch.zeros(1, 3, 3, dtype=data[keys.POSITIONS].dtype)
        data[keys.STRUCTURE_INDEX] = torch.tensor([int(idx)])
        data = transform(data, where=f"{where}: structure {int(idx)}")
        items.append({k: v.to(dtype) if v.is_floating_point() else v for k, v in data.items()})
    if need.get(keys.STRESS, 0) > 0 and not any(bool(d[HAS_STRESS]) for d in items):
        raise DataError(f"{where}: no structure has a stress label but --stress-weight is "
                        f"{need[keys.STRESS]} (pass --stress-weight 0)")
    return items


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
