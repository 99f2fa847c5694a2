"""kill -9 of `mlip-scaling sweep` / `evaluate --jobs 2` takes their child processes along;
a run folder being trained is locked against a second trainer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import ase.io
import pytest
from test_evaluate import _model_file, _structures
from test_training_cli import TINY
from test_training_helpers import emt_structures

from mlip_scaling.data.store import write_store
from mlip_scaling.procs import HAS_PDEATHSIG
from mlip_scaling.scaling import launch_local, sweep
from mlip_scaling.train_config import TrainConfig
from mlip_scaling.training.runner import LOCK_NAME


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process, read from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            out[int(entry.name)] = int(ppid)
    return out


def _descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_parents())


def _kill_and_check(proc: subprocess.Popen, want: int, timeout: float = 240.0) -> None:
    """Wait until ``proc`` has ``want`` working children, SIGKILL it, expect them gone."""
    deadline = time.monotonic() + timeout
    while len(children := _descendants(proc.pid)) < want:
        assert proc.poll() is None, "the parent ended before starting its children"
        assert time.monotonic() < deadline, "the children did not start"
        time.sleep(0.2)
    time.sleep(3.0)  # let the children get to work (past imports, into the real job)
    children = _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 5.0
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _alive(children)
    for pid in left:  # do not leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} of {len(children)} child processes outlived the parent"


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mlip_scaling.scaling.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def test_killed_sweep_takes_its_trainings_along(tmp_path) -> None:
    data = tmp_path / "emt.extxyz"
    ase.io.write(data, emt_structures(24, seed=3))
    proc = _cli("sweep", "--models", "transformer-1.2k", "--train-sizes", "8,12",
                "--epochs", "100000", "--jobs", "2", "--out", str(tmp_path / "sweep"),
                "--data", str(data), "--", "--batch-size", "4", "--threads", "1",
                "--val-size", "4", "--test-size", "4")
    _kill_and_check(proc, want=2)


def test_killed_evaluate_takes_its_workers_along(tmp_path) -> None:
    store = write_store(tmp_path / "cu.h5", _structures(12), {"name": "cu", "oracle": "emt"})
    models = tmp_path / "models"
    models.mkdir()
    for seed in (0, 1):
        _model_file(models / f"m{seed}.pt", store, seed)
    proc = _cli("evaluate", str(models), "--jobs", "2", "--k-relax", "0", "--md-steps",
                "10000000", "--quiet")
    _kill_and_check(proc, want=2)


@pytest.mark.slow  # two trainers prepare their data before the lock decides (~30 s)
def test_second_trainer_on_a_busy_run_folder_refuses(tmp_path) -> None:
    data, out = tmp_path / "emt.extxyz", tmp_path / "run"
    ase.io.write(data, emt_structures(16, seed=4))
    command = [sys.executable, "-m", "mlip_scaling.training.cli", *TINY, "--data", str(data),
               "--out", str(out), "--resume", "--epochs", "100000"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        lock = out / LOCK_NAME
        while not (lock.is_file() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait(timeout=30)
    assert second.returncode == 2
    err = second.stderr.strip()
    assert "another mlip-train is writing" in err and str(first.pid) in err
    assert len(err.splitlines()) == 1


def test_interrupted_sweep_stops_its_trainings(tmp_path, monkeypatch) -> None:
    run = sweep.Run("sleeper", TrainConfig(out=str(tmp_path / "sleeper")))
    monkeypatch.setattr(sweep.Run, "command",
                        property(lambda r: [sys.executable, "-c", "import time; time.sleep(120)"]))
    started = []
    real_start = launch_local._start
    monkeypatch.setattr(launch_local, "_start",
                        lambda r, log: started.append(real_start(r, log)) or started[-1])

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(launch_local, "time",
                        types.SimpleNamespace(sleep=interrupt, perf_counter=time.perf_counter))
    with pytest.raises(KeyboardInterrupt):
        launch_local.run_local([run], jobs=1)
    assert len(started) == 1 and started[0].poll() is not None  # terminated and reaped


def test_linux_has_the_parent_death_signal() -> None:
    assert HAS_PDEATHSIG or not sys.platform.startswith("linux")
