"""Running a sweep's trainings on this machine: ``jobs`` mlip-train processes at a time,
each dying with the sweep; a run whose folder another live process holds (a second sweep on
the same folder) is waited for, then counted done or finished here."""

from __future__ import annotations

import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from mlip_scaling.io_utils import lock_holder
from mlip_scaling.procs import preexec_die_with_parent
from mlip_scaling.train_config import LOCK_NAME

__all__ = ["LaunchedRun", "is_finished", "run_local"]


class LaunchedRun(Protocol):
    """What the launcher needs of a sweep run (:class:`mlip_scaling.scaling.sweep.Run`)."""

    name: str

    @property
    def out(self) -> Path: ...

    @property
    def export(self) -> Path: ...

    @property
    def command(self) -> list[str]: ...


def is_finished(run: LaunchedRun) -> bool:
    """Whether the run's exported model exists and is a readable model file."""
    from mlip_scaling.checkpoint import CheckpointError, load_checkpoint

    try:
        return run.export.is_file() and bool(load_checkpoint(run.export))
    except CheckpointError:
        return False


def run_local(runs: list[LaunchedRun], jobs: int = 1, quiet: bool = False) -> int:
    """Run the trainings here, ``jobs`` at a time (each run's output -> ``train.log`` then,
    and with ``quiet``).

    The trainings die with this process: by the parent-death signal when it is killed,
    and by SIGTERM here when it is stopped or fails.
    """
    active: list[tuple[LaunchedRun, subprocess.Popen, float, int]] = []
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_exit) if main else None
    try:
        return _schedule(runs, jobs, active, log=jobs > 1 or quiet)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        _stop(proc for _, proc, _, _ in active)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _stop(procs: Iterable[subprocess.Popen]) -> None:
    """Terminate still-running trainings (and wait for them)."""
    for proc in [p for p in procs if p.poll() is None]:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _schedule(runs: list[LaunchedRun], jobs: int, active: list, log: bool = False) -> int:
    """Start and reap the runs, ``jobs`` at a time (``active``: the running ones). A run
    whose folder another live process holds (a second sweep on the same folder) is
    running elsewhere: it is waited for, then counted done or started here to finish it."""
    failed: list[str] = []
    queue = list(reversed(runs)) if jobs > 1 else list(runs)  # largest (last in grid) first
    waiting: list[LaunchedRun] = []
    started = 0
    while queue or active or waiting:
        queue[:0] = _freed(waiting)
        while queue and len(active) < jobs:
            r = queue.pop(0)
            if _elsewhere(r, waiting):
                continue
            started += 1
            print(f"[{started}/{len(runs)}] {r.name}: {shlex.join(r.command)}", flush=True)
            active.append((r, _start(r, log=log), time.perf_counter(), started))
        time.sleep(0.2)
        for item in [a for a in active if a[1].poll() is not None]:
            active.remove(item)
            r, proc, start, k = item
            code = proc.returncode
            if code and _elsewhere(r, waiting):  # another sweep claimed it first
                continue
            failed += [r.name] if code else []
            state = f"FAILED (exit {code})" if code else f"done -> {r.export}"
            print(f"[{k}/{len(runs)}] {r.name}: {state} after "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    print(f"{len(failed)} run(s) failed: {', '.join(failed)} (re-run the sweep to resume)"
          if failed else f"all {len(runs)} runs done")
    return 1 if failed else 0


def _holder(r: LaunchedRun) -> str | None:
    """The process id of another live process holding ``r``'s run folder, else None."""
    return lock_holder(r.out / LOCK_NAME)


def _elsewhere(r: LaunchedRun, waiting: list[LaunchedRun]) -> bool:
    """Whether ``r`` runs in another process now; it is then added to ``waiting``."""
    holder = _holder(r)
    if holder is None:
        return False
    waiting.append(r)
    print(f"{r.name}: running elsewhere (process {holder}); waiting for it", flush=True)
    return True


def _freed(waiting: list[LaunchedRun]) -> list[LaunchedRun]:
    """The waiting runs whose folder is free again and that did not finish there (to start
    here); the finished ones are reported done and removed from ``waiting``."""
    restart = []
    for r in [w for w in waiting if _holder(w) is None]:
        waiting.remove(r)
        if is_finished(r):
            print(f"{r.name}: done elsewhere -> {r.export}", flush=True)
        else:
            restart.append(r)
    return restart


def _start(r: LaunchedRun, log: bool) -> subprocess.Popen:
    """Start one mlip-train process (it dies with this one); with ``log`` its output is
    appended to ``train.log``."""
    if not log:
        return subprocess.Popen(r.command, preexec_fn=preexec_die_with_parent())
    r.out.mkdir(parents=True, exist_ok=True)
    with open(r.out / "train.log", "ab") as fh:
        return subprocess.Popen(r.command, stdout=fh, stderr=subprocess.STDOUT,
                                preexec_fn=preexec_die_with_parent())
