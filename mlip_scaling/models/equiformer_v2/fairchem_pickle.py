"""Read fairchem checkpoint files without executing code from them.

fairchem's training checkpoints are ``torch.save`` archives that hold, besides tensors and
plain containers, a few numpy objects (metric values as numpy scalars, their dtypes,
sometimes arrays). :func:`read_fairchem_file` unpickles them with an unpickler that maps
exactly those classes to plain data and refuses every other global: nothing named by the
file is imported or called beyond tensor, array and scalar reconstruction.
"""

from __future__ import annotations

import collections
import os
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip_scaling.errors import MlipError

__all__ = ["FairchemFileError", "read_fairchem_file"]


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


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it for raw bytes (latin-1 only)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("refused global _codecs.encode with another encoding")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("_codecs", "encode"): _latin1_bytes,
}
for _core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_core, "scalar")] = _numpy_scalar
    _ALLOWED[(_core, "_reconstruct")] = _numpy_array


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose globals are only those of :data:`_ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


_PICKLE_MODULE = types.ModuleType("mlip_scaling_restricted_pickle")
_PICKLE_MODULE.Unpickler = _RestrictedUnpickler
_PICKLE_MODULE.load = lambda f, **kw: _RestrictedUnpickler(f, **kw).load()


def read_fairchem_file(path: str | os.PathLike) -> Any:
    """The object stored in a fairchem ``.pt`` archive, read with the restricted unpickler.

    Raises :class:`FairchemFileError` (one line naming the file) when the file is missing,
    not a torch zip archive, or holds any object other than tensors, plain containers and
    numpy scalars/arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FairchemFileError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise FairchemFileError(f"{path}: not a torch zip archive (empty, truncated or corrupt)")
    try:
        # weights_only=False only because the restricted unpickler above replaces torch's;
        # it never resolves a global outside _ALLOWED
        return torch.load(
            path, map_location="cpu", pickle_module=_PICKLE_MODULE, weights_only=False
        )
    except pickle.UnpicklingError as exc:
        raise FairchemFileError(f"{path}: refused to load: {str(exc)[:160]}") from None
    except Exception as exc:  # corrupt archives raise many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FairchemFileError(f"{path}: unreadable checkpoint ({first[:120]})") from None
