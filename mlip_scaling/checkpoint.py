"""Self-describing model files (``.pt``): plain dicts, loaded with ``weights_only=True``.

Format ``mlip-scaling/1`` (see ARCHITECTURE.md)::

    {"format": "mlip-scaling/1",
     "model": {"family": str, "config": dict},
     "state_dict": {...}, "species": [Z...], "cutoff": float,
     "reference_energies": {Z: eV}, "scale": float, "shift": float,
     "train": {...}, "metrics": {...}}
"""

from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from mlip_scaling.data.atomic_data import check_elements
from mlip_scaling.data.splits import SplitSpec
from mlip_scaling.errors import ConfigError, MlipError
from mlip_scaling.io_utils import atomic_torch_save, check_torch_archive
from mlip_scaling.models.potential import MAX_Z, Potential
from mlip_scaling.models.registry import build_model, meta_shapes, validate_config

__all__ = ["FORMAT", "CheckpointError", "potential_to_dict", "save_potential", "load_checkpoint",
           "load_potential", "validate_checkpoint", "load_error_reason", "STATE_FORMAT",
           "save_state", "load_state", "is_run_state"]

FORMAT = "mlip-scaling/1"
#: format of a resumable training state (``last.pt``: weights, optimizer, RNG, ...)
STATE_FORMAT = "mlip-scaling-train-state/1"


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
    """Read and validate a checkpoint dict; never executes code from the file.

    The model config, species, reference energies and weights are checked (and the
    weights' shapes compared with the config's, on the meta device) before anything is
    built, so a bad file costs no more memory than its own size.
    """
    path = check_torch_archive(path, "model file", CheckpointError)
    _check_archive_size(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        _raise_if_fairchem(path)
        raise CheckpointError(f"{path}: {load_error_reason(exc)}") from None
    except Exception as exc:  # torch/zip/pickle raise many types on corrupt archives
        raise CheckpointError(f"{path}: not a readable model file ({load_error_reason(exc)})"
                              ) from None
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
    validate_checkpoint(ckpt, path)
    return ckpt


def _check_archive_size(path: Path) -> None:
    """Refuse archives that expand far beyond their size (torch stores members
    uncompressed, so a model file unpacks to about its own size)."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable model file (truncated or corrupt: "
                              f"{type(exc).__name__})") from None
    size = path.stat().st_size
    if unpacked > 2 * size + (1 << 20):
        raise CheckpointError(f"{path}: refused to load: the archive unpacks to "
                              f"{unpacked / 1e6:.1f} MB from {size / 1e6:.1f} MB (compressed "
                              "members; torch writes model files uncompressed)")


def load_error_reason(exc: BaseException) -> str:
    """One line on why ``torch.load(weights_only=True)`` failed, in our words: torch's own
    text (advice to allow-list globals or to drop ``weights_only``) is never quoted."""
    if isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        return (f"refused to load: the file holds a Python object{what} besides tensors "
                "and plain data, and is read as data only")
    return f"truncated or corrupt: {type(exc).__name__}"


#: fields of a model file's train record that evaluation copies into its results
_TRAIN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "split": dict, "dataset": str, "dataset_hash": str, "dataset_name": str, "model": str,
    "preset": str, "n_params": (int, float), "n_train_structures": (int, float),
    "flops": (int, float), "converged": bool, "best_step": (int, float),
}
_KIND_NAMES = {dict: "mapping", str: "string", (int, float): "finite number", bool: "true/false"}


def _plain_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
        value)


def _check_layout(ckpt: dict[str, Any]) -> None:
    model = ckpt["model"]
    if not (isinstance(model, dict) and isinstance(model.get("family"), str)
            and isinstance(model.get("config"), dict)):
        raise ValueError("'model' must be {'family': name, 'config': {...}}")
    for key in ("train", "metrics", "reference_energies", "state_dict"):
        if not isinstance(ckpt.get(key, {}), dict):
            raise ValueError(f"{key!r} must be a mapping, got {type(ckpt[key]).__name__}")
    for key in ("scale", "shift", "cutoff"):
        if key in ckpt and not _plain_number(ckpt[key]):
            raise ValueError(f"{key!r} must be a finite number, got {ckpt[key]!r}")
    train = ckpt.get("train", {})
    for key, kind in _TRAIN_FIELDS.items():
        value = train.get(key)
        numeric = isinstance(kind, tuple)
        if value is not None and (not isinstance(value, kind) or (
                numeric and not _plain_number(value))):
            raise ValueError(f"train.{key} must be a {_KIND_NAMES[kind]}, got {value!r}")
    try:
        SplitSpec.from_dict(train.get("split") or {})
    except ValueError as exc:  # the message starts with the field's name
        raise ValueError(f"train.split.{exc}") from None


def _check_species(ckpt: dict[str, Any]) -> None:
    species, refs = ckpt["species"], ckpt.get("reference_energies", {})
    limit = min(MAX_Z, ckpt["model"]["config"].get("max_num_elements", MAX_Z))
    if not isinstance(species, list | tuple) or not species:
        raise ValueError(f"species must be a non-empty list of atomic numbers, got {species!r}")
    numbers = [*species, *refs]
    odd = [z for z in numbers if isinstance(z, bool) or not isinstance(z, int)]
    if odd:
        raise ValueError(f"atomic number {odd[0]!r} is not an integer")
    check_elements(numbers, lambda k: "species" if k < len(species) else "reference_energies",
                   limit - 1)
    bad = [z for z, e in refs.items() if not _plain_number(e)]
    if bad:
        raise ValueError(f"reference energy of Z={bad[0]} is {refs[bad[0]]!r}, not a finite "
                         "number")


def _check_weights(ckpt: dict[str, Any]) -> None:
    state, family = ckpt["state_dict"], ckpt["model"]["family"]
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"weight {name!r} is a {type(value).__name__}, not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"weight {name!r} holds NaN or inf")
    try:
        shapes = meta_shapes(family, ckpt["model"]["config"])
    except (RuntimeError, TypeError) as exc:  # a combination the model rejects
        raise ValueError(f"the model config cannot be built ({type(exc).__name__})") from None
    held = {name: tuple(t.shape) for name, t in state.items()}
    if shapes != held:
        implied = sum(math.prod(s) for s in shapes.values())
        stored = sum(math.prod(s) for s in held.values())
        diff = sorted(set(shapes.items()) ^ set(held.items()))
        raise ValueError(f"the config implies {implied:,} weights in {len(shapes)} tensors, "
                         f"the file holds {stored:,} in {len(held)} (first difference: "
                         f"{diff[0][0]!r})")


def validate_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike = "model file") -> None:
    """Check a checkpoint dict before anything is built (CheckpointError naming ``path``):
    layout and field types, the model config (known keys, sane ranges), species and
    reference energies (Z in 1..118), finite weights whose shapes match the config."""
    try:
        _check_layout(ckpt)
        validate_config(ckpt["model"]["family"], ckpt["model"]["config"])
        _check_species(ckpt)
        _check_weights(ckpt)
    except ValueError as exc:  # ConfigError included
        raise CheckpointError(f"{path}: invalid model file: {exc}") from None


def _raise_if_fairchem(path: Path) -> None:
    """A fairchem checkpoint gets a one-line pointer to the importer."""
    from mlip_scaling.models.equiformer_v2.fairchem_pickle import fairchem_hint

    hint = fairchem_hint(path)
    if hint:
        raise CheckpointError(hint)


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


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a training run state atomically (a kill leaves the previous file intact)."""
    atomic_torch_save({"format": STATE_FORMAT, **state}, path)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run state written by :func:`save_state` (weights-only, on CPU); ConfigError
    naming ``path`` when it is not one."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt archive / unsafe content: one line, no traceback
        raise ConfigError(f"{path}: cannot resume from this file ({load_error_reason(exc)})"
                          ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path}: not a training state file of format {STATE_FORMAT!r}")
    return state


def is_run_state(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a resumable training state (``last.pt``), judged by its content."""
    try:
        load_state(path)
    except ConfigError:
        return False
    return True
