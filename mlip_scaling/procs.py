"""Child processes that die with their parent (Linux parent-death signal).

A process killed with SIGKILL cannot clean up after itself, so each child asks the kernel
to be signalled when its parent goes away (``prctl(PR_SET_PDEATHSIG)``). Where that call
does not exist (not Linux), children stay in the parent's process group, so that
``kill -- -PGID`` or Ctrl-C in the terminal stops them together with the parent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
from collections.abc import Callable

__all__ = ["die_with_parent", "preexec_die_with_parent", "HAS_PDEATHSIG"]

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved once in the parent (never after a fork)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
HAS_PDEATHSIG = _PRCTL is not None


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
