"""Resumable run state (``last.pt``): RNG capture/restore and safe save/load.

Everything stored is tensors and plain Python data so that the file loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip_scaling.errors import ConfigError
from mlip_scaling.io_utils import atomic_torch_save

__all__ = ["STATE_FORMAT", "capture_rng", "restore_rng", "save_state", "load_state"]

STATE_FORMAT = "mlip-scaling-train-state/1"


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


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the run state atomically (a kill leaves the previous file intact)."""
    atomic_torch_save({"format": STATE_FORMAT, **state}, path)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run state written by :func:`save_state` (weights-only, on CPU)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt archive / unsafe content: one line, no traceback
        from mlip_scaling.checkpoint import load_error_reason

        raise ConfigError(f"{path}: cannot resume from this file ({load_error_reason(exc)})"
                          ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path}: not a training state file of format {STATE_FORMAT!r}")
    return state
