"""Mixed precision: which autocast dtype, and whether a GradScaler is needed.

``--amp`` alone (``auto``): bf16 autocast on CUDA devices that support bf16, fp16 autocast
with a GradScaler on older CUDA devices, bf16 on CPUs with native bf16 instructions
(AVX512-BF16 / AMX), and full float32 on other CPUs (emulated bf16 is slower there).
Losses, forces and stress always come out in float32 (the positions are float32 leaves).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from mlip_scaling.errors import ConfigError

__all__ = ["resolve_amp", "autocast", "cpu_has_bf16"]


def cpu_has_bf16() -> bool:
    """Whether the CPU advertises native bf16 instructions (Linux /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> str:
    """``auto``/``bf16``/``fp16``/``off`` -> the precision actually used on ``device``."""
    if amp == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_bf16() else "off"
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device (use bf16 or off on CPU)")
    return amp


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of a resolved precision (a no-op for ``off``)."""
    if precision == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
