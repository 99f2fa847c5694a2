"""Mixed precision: which autocast dtype, and whether a GradScaler is needed.

``--amp`` alone (``auto``): bf16 autocast on CUDA devices that support bf16, fp16 autocast
with a GradScaler on older CUDA devices. On a CPU, bf16 autocast is not reliably faster
even with native bf16 instructions (``benchmarks/bench_amp.py``: transformer-2.3k, the default
preset, takes 1.3-1.4x as long per step in bf16 on an AMD EPYC with AVX512-BF16), so ``auto``
times a few steps of both (CPU time with one thread, wall time with more: see
:func:`probe_clock`) and keeps the faster (bf16 only when at least 5 % faster;
float32 without native bf16: emulated bf16 is always slower). Losses, forces and stress
always come out in float32.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mlip_scaling.errors import ConfigError

__all__ = ["resolve_amp", "autocast", "cpu_has_bf16", "time_precisions", "choose_cpu_precision",
           "probe_clock",
           "CPU_CANDIDATES", "PRECISION_NAMES", "BF16_MARGIN"]

#: What ``auto`` chooses between on a CPU with native bf16.
CPU_CANDIDATES = ("off", "bf16")
#: bf16 (the less precise) is taken only when its best step time is this much shorter.
BF16_MARGIN = 0.95
PRECISION_NAMES = {"off": "float32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}


def cpu_has_bf16() -> bool:
    """Whether the CPU advertises native bf16 instructions (Linux /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> str:
    """``auto``/``bf16``/``fp16``/``off`` -> the precision used on ``device``.

    On a CPU, ``auto`` resolves to ``off`` here; the trainer then times both candidates
    (:func:`time_precisions`) when the CPU has native bf16.
    """
    if amp == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "off"
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device (use bf16 or off on CPU)")
    return amp


def time_precisions(step: Callable[[str], None], repeats: int = 3, budget_s: float = 30.0,
                    clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Best time (s) of up to ``repeats`` calls of ``step(precision)`` per CPU candidate.

    One untimed warm-up call each, then the candidates alternate so that load from other
    processes hits both alike; rounds stop once ``budget_s`` seconds were spent timing.
    """
    for precision in CPU_CANDIDATES:
        step(precision)
    best = dict.fromkeys(CPU_CANDIDATES, math.inf)
    spent = 0.0
    for _ in range(repeats):
        for precision in CPU_CANDIDATES:
            start = clock()
            step(precision)
            seconds = clock() - start
            best[precision], spent = min(best[precision], seconds), spent + seconds
        if spent > budget_s:
            break
    return best


def probe_clock() -> Callable[[], float]:
    """The clock ``auto`` times its candidates with: CPU time of this process when torch
    runs one thread (equal to the wall time of an idle core, and not lengthened by other
    processes on a shared machine), wall time otherwise (CPU time would add up threads)."""
    return time.process_time if torch.get_num_threads() == 1 else time.perf_counter


def choose_cpu_precision(seconds: dict[str, float]) -> tuple[str, str]:
    """``(precision, reason)`` from measured step times: bf16 only when >= 5 % faster."""
    chosen = "bf16" if seconds["bf16"] < BF16_MARGIN * seconds["off"] else "off"
    other = "off" if chosen == "bf16" else "bf16"
    reason = (f"faster here: {1e3 * seconds[chosen]:.0f} ms/step vs {PRECISION_NAMES[other]} "
              f"{1e3 * seconds[other]:.0f} ms/step, best of timed training steps")
    return chosen, reason


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of a resolved precision (a no-op for ``off``)."""
    if precision == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
