"""Datasets: opening any source, the test set of a model, in-memory prepared structures.

Training asks for its train/val structures (:class:`~mlip_scaling.data.splits.SplitSpec`
+ :func:`prepare`); evaluation and the bias analysis ask :func:`test_set` for the test set
of a model file, so every caller sees the split the model was trained with.
"""

from __future__ import annotations

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
from mlip_scaling.data.splits import SplitSpec
from mlip_scaling.errors import DataError
from mlip_scaling.io_utils import file_hash

__all__ = ["open_source", "open_for_model", "source_info", "test_set", "atoms_at", "prepare"]


def open_source(path: str | Path | None) -> tuple[Any, Path]:
    """Open a dataset file (``None`` = the embedded default) -> (indexable source, path)."""
    embedded = path is None
    path = default_data_path() if embedded else Path(path)
    if not path.exists():
        hint = " (the embedded dataset is missing: regenerate it with `make data` or pass --data)"
        raise DataError(f"{path}: no such dataset file" + (hint if embedded else ""))
    from mlip_scaling.data.readers import open_dataset

    return open_dataset(path), path


def open_for_model(path: str | Path, ckpt: dict, model_file: str | Path) -> Any:
    """Open dataset ``path`` for the model file ``model_file`` (checkpoint dict ``ckpt``);
    DataError when its content hash differs from the one the model was trained on."""
    source, path = open_source(path)
    expected = (ckpt.get("train") or {}).get("dataset_hash")
    actual = (getattr(source, "metadata", None) or {}).get("content_hash")
    if actual is None and path.is_file() and path.suffix != ".h5":
        actual = file_hash(path)
    if expected and actual and expected != actual:
        raise DataError(f"{model_file}: dataset {path} differs from the one the model was "
                        "trained on (content hash mismatch); pass the right --data")
    return source


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


def test_set(ckpt: dict, source: Any, max_test: int | None = None,
             where: str = "dataset") -> np.ndarray:
    """Indices into ``source`` of the test split of the model file ``ckpt`` (the split it
    stores; see :meth:`SplitSpec.from_checkpoint`), the first ``max_test`` when given;
    errors name the dataset ``where``."""
    indices = SplitSpec.from_checkpoint(ckpt).indices(len(source), where)["test"]
    if len(indices) == 0:
        raise DataError(f"{where}: the test split is empty (train with --test-size > 0)")
    return indices[:max_test] if max_test else indices


test_set.__test__ = False  # not a pytest test despite the name


def atoms_at(source: Any, index: int) -> Atoms:
    """Structure ``index`` of ``source`` as ASE Atoms with its labels (a copy)."""
    if hasattr(source, "get_atoms"):
        return source.get_atoms(int(index))
    return source[int(index)].copy()


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
        data[keys.HAS_STRESS] = torch.tensor([keys.STRESS in data])
        if keys.STRESS not in data:
            data[keys.STRESS] = torch.zeros(1, 3, 3, dtype=data[keys.POSITIONS].dtype)
        data[keys.STRUCTURE_INDEX] = torch.tensor([int(idx)])
        data = transform(data, where=f"{where}: structure {int(idx)}")
        items.append({k: v.to(dtype) if v.is_floating_point() else v for k, v in data.items()})
    if need.get(keys.STRESS, 0) > 0 and not any(bool(d[keys.HAS_STRESS]) for d in items):
        raise DataError(f"{where}: no structure has a stress label but --stress-weight is "
                        f"{need[keys.STRESS]} (pass --stress-weight 0)")
    return items
