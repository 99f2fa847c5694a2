"""Process-level settings: children that die with their parent, freed memory kept for reuse.

A process killed with SIGKILL cannot clean up after itself, so each child asks the kernel
to be signalled when its parent goes away (``prctl(PR_SET_PDEATHSIG)``). Where that call
does not exist (not Linux), children stay in the parent's process group, so that
``kill -- -PGID`` or Ctrl-C in the terminal stops them together with the parent.

Training steps and MD steps allocate the same large per-edge tensors again and again.
glibc hands blocks above its mmap threshold (128 KiB to start) back to the kernel on
``free`` and trims the heap top, so every step maps fresh pages and takes a minor page
fault per 4 KiB page. :func:`keep_freed_memory` (``mallopt``) keeps such blocks in the
heap for the next step; it is applied by the package's own entry points only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

__all__ = ["die_with_parent", "preexec_die_with_parent", "HAS_PDEATHSIG", "keep_freed_memory",
           "KEEP_MEMORY_ENV", "worker_pool"]

_PR_SET_PDEATHSIG = 1
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
#: Largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2), bytes.
_MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory (bytes) the heap top may hold before glibc returns it to the kernel.
_TRIM_THRESHOLD = 1024 * 1024 * 1024
#: Set to ``0`` to leave glibc's allocator settings alone.
KEEP_MEMORY_ENV = "MLIP_KEEP_MEMORY"


def _libc_function(name: str) -> Callable[..., int] | None:
    """A function of libc, resolved once in the parent (never after a fork); None if absent."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return getattr(libc, name)
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_function("prctl")
_MALLOPT = _libc_function("mallopt")
HAS_PDEATHSIG = _PRCTL is not None


def keep_freed_memory() -> bool:
    """Let this process reuse freed memory instead of returning it to the kernel each step.

    Raises glibc's mmap threshold to 32 MiB and its trim threshold to 1 GiB, and disables
    mmap for larger blocks, so that the tensors of one step are carved from memory the
    previous step freed (no fresh pages, no page faults). Memory is still returned when
    the process ends. Returns True when applied; False (and does nothing) where libc has
    no ``mallopt`` (not glibc) or ``MLIP_KEEP_MEMORY=0`` is set.
    """
    if _MALLOPT is None or os.environ.get(KEEP_MEMORY_ENV, "1").strip() == "0":
        return False
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
                (_M_MMAP_MAX, 0))
    return all(_MALLOPT(param, value) == 1 for param, value in settings)


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """In a child: receive ``sig`` when the parent ``parent_pid`` dies.

    If the parent died before this call (the child was re-parented), exit at once.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def preexec_die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``subprocess.Popen(preexec_fn=...)`` that ties the child's life to this process."""
    return functools.partial(die_with_parent, os.getpid(), sig)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` spawned processes that die with this one, each started with
    one BLAS/OpenMP thread (they inherit ``os.environ``, restored here afterwards)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: "1" for k in names})
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                 initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            yield pool
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
