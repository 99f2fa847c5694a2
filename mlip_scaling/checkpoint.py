"""Self-describing model files (``.pt``): plain dicts, loaded with ``weights_only=True``.

Format ``mlip-scaling/1`` (see ARCHITECTURE.md)::

    {"format": "mlip-scaling/1",
     "model": {"family": str, "config": dict},
     "state_dict": {...}, "species": [Z...], "cutoff": float,
     "reference_energies": {Z: eV}, "scale": float, "shift": float,
     "train": {...}, "metrics": {...}}
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from mlip_scaling.errors import MlipError
from mlip_scaling.io_utils import atomic_torch_save
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model

__all__ = ["FORMAT", "CheckpointError", "potential_to_dict", "save_potential", "load_checkpoint",
           "load_potential"]

FORMAT = "mlip-scaling/1"


class CheckpointError(MlipError, ValueError):
    """A model file that cannot be used (missing, corrupt, unknown format, unsafe)."""


def potential_to_dict(
    potential: Potential, train: dict | None = None, metrics: dict | None = None
) -> dict[str, Any]:
    """The checkpoint dict of a potential (weights on CPU)."""
    return {
        "format": FORMAT,
        "model": {"family": potential.family, "config": dict(potential.config)},
        "state_dict": {k: v.detach().cpu() for k, v in potential.model.state_dict().items()},
        "species": list(potential.species),
        "cutoff": potential.cutoff,
        "reference_energies": {int(z): e for z, e in potential.reference_dict().items()},
        "scale": float(potential.scale),
        "shift": float(potential.shift),
        "train": dict(train or {}),
        "metrics": dict(metrics or {}),
    }


def save_potential(
    path: str | os.PathLike,
    potential: Potential,
    train: dict | None = None,
    metrics: dict | None = None,
) -> Path:
    """Write ``potential`` as a self-describing ``.pt`` file, atomically."""
    atomic_torch_save(potential_to_dict(potential, train, metrics), path)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint dict; never executes code from the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a readable model file (not a torch zip archive: "
                              "empty, truncated or corrupt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        _raise_if_fairchem(path)
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"data ({_refusal_reason(str(exc))})"
        ) from None
    except Exception as exc:  # torch/zip/pickle raise many types on corrupt archives
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: not a readable model file (truncated or corrupt: "
                              f"{first[:120]})") from None
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        _raise_if_fairchem(path)
        raise CheckpointError(f"{path}: not an mlip-scaling model file (no 'format' key)")
    if ckpt["format"] != FORMAT:
        raise CheckpointError(
            f"{path}: unknown format version {ckpt['format']!r}; this version reads {FORMAT!r}"
        )
    missing = [k for k in ("model", "state_dict", "species") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: model file lacks {', '.join(missing)}")
    return ckpt


def _raise_if_fairchem(path: Path) -> None:
    """A fairchem checkpoint gets a one-line pointer to the importer."""
    from mlip_scaling.models.equiformer_v2.fairchem_import import fairchem_hint

    hint = fairchem_hint(path)
    if hint:
        raise CheckpointError(hint)


def _refusal_reason(message: str) -> str:
    """The line of a weights-only unpickling error that names the refused object."""
    for line in message.splitlines():
        if "GLOBAL" in line or "global" in line:
            return line.strip()[:160]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0][:120] if lines else "unsafe content"


def potential_from_dict(ckpt: dict[str, Any]) -> Potential:
    """Rebuild a :class:`Potential` from a checkpoint dict."""
    family, config = ckpt["model"]["family"], ckpt["model"]["config"]
    potential = Potential(
        build_model(family, config),
        family=family,
        config=config,
        species=ckpt["species"],
        reference_energies={int(z): float(e) for z, e in ckpt["reference_energies"].items()},
        scale=float(ckpt.get("scale", 1.0)),
        shift=float(ckpt.get("shift", 0.0)),
    )
    potential.model.load_state_dict(ckpt["state_dict"])
    return potential


def load_potential(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Potential:
    """Load a model file into an eval-mode :class:`Potential` on ``device`` in ``dtype``."""
    ckpt = load_checkpoint(path)
    try:
        potential = potential_from_dict(ckpt)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: model file is inconsistent: {detail}") from None
    return potential.to(device=device, dtype=dtype).eval()
