"""Resumable run state (``last.pt``): RNG capture/restore; the file functions live in
``mlip_scaling.checkpoint`` (evaluation recognises run states without importing training).

Everything stored is tensors and plain Python data so that the file loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip_scaling.checkpoint import STATE_FORMAT, load_state, save_state
from mlip_scaling.errors import ConfigError
from mlip_scaling.train_config import RESUME_KEYS

__all__ = ["STATE_FORMAT", "capture_rng", "restore_rng", "save_state", "load_state",
           "check_resumable", "datasets_before"]


def capture_rng() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU and CUDA) generators as plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    state = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    legacy = (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
              npy["gauss"])
    np.random.set_state(legacy)  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_resumable(path: Path, state: dict, config: dict, hyperparameters: dict) -> None:
    """Refuse to resume the run state ``state`` (read from ``path``) with changed resume
    options (``config``: this run's options) or into a model whose hyperparameters differ
    from the run's (``hyperparameters``: their stored form)."""
    changed = [k for k in RESUME_KEYS if state["config"].get(k) != config[k]]
    if changed:
        raise ConfigError(f"{path}: cannot resume with changed option(s) "
                          f"{', '.join(changed)} (use another --out)")
    before = state.get("hyperparameters")  # absent in states of earlier versions
    if before is None or before == hyperparameters:
        return
    differ = [k for k in sorted(set(before) | set(hyperparameters))
              if before.get(k) != hyperparameters.get(k)]
    raise ConfigError(f"{path}: the run started with other hyperparameters than this "
                      f"model has ({', '.join(differ)} differ)")


def datasets_before(path: Path, state: dict, dataset_hash: str | None,
                    allow_change: bool) -> list[str]:
    """Content hashes of the datasets the run was trained on before this one; resuming on
    other data is refused unless ``allow_change`` (then the old hash is remembered)."""
    before = state.get("dataset_hash")
    previous = list(state.get("previous_datasets") or [])
    if not before or not dataset_hash or before == dataset_hash:
        return previous
    if not allow_change:
        raise ConfigError(f"{path}: the run was trained on dataset {before} but --data has "
                          f"content hash {dataset_hash}; pass --allow-data-change to "
                          "continue on the new data, or use another --out")
    return [*previous, before]
