"""Device and dtype names -> torch objects, for training and the calculators alike."""

from __future__ import annotations

import torch

from mlip_scaling.errors import ConfigError

__all__ = ["DTYPES", "resolve_device", "resolve_dtype"]

#: the float dtypes a model may run in, by name
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str | torch.device, local_rank: int | None = None) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names as ``torch.device``.

    With ``local_rank`` (the process's GPU under ``torchrun``), a CUDA device without an
    index gets that index; without it, ``"cuda"`` stays the current CUDA device.
    :class:`ConfigError` when ``name`` is not a device or asks for CUDA on a machine without.
    """
    if str(name) == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {name!r} is not a device (use auto, cpu, cuda, cuda:N)"
                          ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(name)!r} requested but CUDA is not available")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank)
    return device


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` (or those torch dtypes) -> torch dtype (ConfigError else)."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return DTYPES[dtype]
