"""Read fairchem checkpoint files without executing code from them.

fairchem's training checkpoints are ``torch.save`` archives that hold, besides tensors and
plain containers, a few numpy objects (metric values as numpy scalars, their dtypes,
sometimes arrays). :func:`read_fairchem_file` reads them with torch's weights-only
unpickler, allowing in addition only those numpy names, each served by a stand-in that
returns plain data and refuses object dtypes: nothing named by the file is imported or
called beyond tensor, array and scalar reconstruction.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import numpy as np
import torch

from mlip_scaling.errors import MlipError
from mlip_scaling.io_utils import check_torch_archive

__all__ = ["FairchemFileError", "fairchem_hint", "is_fairchem_checkpoint", "read_fairchem_file"]


class FairchemFileError(MlipError, ValueError):
    """A fairchem checkpoint that cannot be read or expressed (names the file)."""


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    """A numpy scalar as the Python number it holds (object scalars are refused)."""
    dtype = np.dtype(dtype)
    if dtype.hasobject or data is None:
        raise pickle.UnpicklingError("refused global numpy scalar of object dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


def _numpy_dtype(name: str, align: bool = False, copy: bool = True) -> np.dtype:
    """``numpy.dtype`` for plain (non-object) type codes only."""
    dtype = np.dtype(name, align, copy)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refused global numpy dtype of object type")
    return dtype


def _numpy_array(subtype: Any, shape: tuple, dtype_code: bytes) -> np.ndarray:
    """Empty ``ndarray`` that numpy's own ``__setstate__`` then fills with raw values."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("refused global numpy array subclass")
    return np.ndarray.__new__(np.ndarray, shape, np.dtype(dtype_code))


#: the numpy globals such checkpoints name, each served by a restricted stand-in above
_NUMPY_GLOBALS: list[tuple[Any, str]] = [(_numpy_dtype, "numpy.dtype"),
                                         (np.ndarray, "numpy.ndarray")]
for _code in "?bhilqBHILQefdgFDG":  # the plain dtype classes, so their state can be set
    _kind = type(np.dtype(_code))
    _NUMPY_GLOBALS.append((_kind, f"numpy.dtypes.{_kind.__name__}"))
for _core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY_GLOBALS += [(_numpy_scalar, f"{_core}.scalar"), (_numpy_array, f"{_core}._reconstruct")]


def read_fairchem_file(path: str | os.PathLike) -> Any:
    """The object stored in a fairchem ``.pt`` archive, read as data only (module docstring).

    Raises :class:`FairchemFileError` (one line naming the file) when the file is missing,
    not a torch zip archive, or holds any object other than tensors, plain containers and
    numpy scalars/arrays.
    """
    path = check_torch_archive(path, "checkpoint file", FairchemFileError)
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        refused = re.search(r"refused global [^.\n]+", str(exc))
        what = (f"refused global {found.group(1)}" if found else
                refused.group(0) if refused else "not plain data")
        raise FairchemFileError(f"{path}: refused to load: {what} (read as tensors, plain "
                                "containers and numpy numbers only)") from None
    except Exception as exc:  # corrupt archives raise many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FairchemFileError(f"{path}: unreadable checkpoint ({first[:120]})") from None


def is_fairchem_checkpoint(obj: Any) -> bool:
    """True for a dict shaped like a fairchem training checkpoint."""
    return (isinstance(obj, dict) and "format" not in obj and "state_dict" in obj
            and isinstance(obj.get("config"), dict) and "model" in obj["config"])


def fairchem_hint(path: str | os.PathLike) -> str | None:
    """For a fairchem checkpoint, the one-line message that says how to import it."""
    try:
        ckpt = read_fairchem_file(path)
    except FairchemFileError:
        return None
    if not is_fairchem_checkpoint(ckpt):
        return None
    return (f"{path}: a fairchem checkpoint, not an mlip-scaling model file; convert it with "
            f"'mlip-scaling import-fairchem {path} --out MODEL.pt' (or in memory: "
            "potential_from_dict(import_fairchem(path)))")
