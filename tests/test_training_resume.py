"""Kill -9 during training + --resume gives the same final weights as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from test_training_helpers import _main

HELPER = Path(__file__).with_name("test_training_helpers.py")
STEPS = 12


def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HELPER), str(run_dir), str(STEPS), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _uninterrupted(run_dir: Path) -> None:
    """The same run in this process (same thread count as the subprocesses)."""
    threads = torch.get_num_threads()
    try:
        _main([str(run_dir), str(STEPS)])
    finally:
        torch.set_num_threads(threads)


def _kill_after(proc: subprocess.Popen, run_dir: Path, after_step: int) -> None:
    try:
        for line in proc.stdout:
            if line.strip() == f"step {after_step}":
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "final.pt").exists()


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    proc = _start(broken)
    _uninterrupted(whole)
    _kill_after(proc, broken, after_step=5)
    state = torch.load(broken / "last.pt", weights_only=True)  # plain data: loads safely
    assert 1 <= state["step"] < STEPS and not state["finished"]
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    resumed = _start(broken, "--resume")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0
    assert out.split("\n")[0] == f"step {state['step'] + 1}"
    a, b = _load(whole / "final.pt"), _load(broken / "final.pt")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # the metrics log has no duplicate records after the resume
    steps = [line for line in (broken / "metrics.jsonl").read_text().splitlines()
             if '"kind": "val"' in line]
    whole_steps = [line for line in (whole / "metrics.jsonl").read_text().splitlines()
                   if '"kind": "val"' in line]
    assert len(steps) == len(whole_steps)
    final = torch.load(broken / "last.pt", weights_only=True)
    assert final["finished"] and final["step"] == STEPS
    assert final["flops"] == torch.load(whole / "last.pt", weights_only=True)["flops"] > 0
