"""benchmarks/device_check.py: one line and exit 0 without CUDA; rows that fail, skip or
run out of time do not hide the others."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import device_check  # noqa: E402


def test_without_cuda_one_line_and_exit_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(BENCH / "device_check.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == device_check.NO_CUDA + "\n"


def test_every_row_reported_whatever_the_others_do():
    now = [0.0]

    def clock() -> float:
        return now[0]

    def slow() -> tuple[str, str]:
        now[0] += 100.0
        return "1.0 ms/step", "force err 1e-12"

    def broken() -> tuple[str, str]:
        raise RuntimeError("CUDA error: an illegal memory access\nsecond line")

    def wrong() -> tuple[str, str]:
        raise device_check.CheckFailed("force err 3e-01 (tolerance 0.001)")

    def absent() -> tuple[str, str]:
        raise device_check.Skipped("extra not installed")

    checks = [("a", slow), ("b", broken), ("c", wrong), ("d", absent), ("e", slow), ("f", slow)]
    rows = device_check.run_checks(checks, budget_s=200.0, clock=clock)
    assert [(r.name, r.status) for r in rows] == [
        ("a", "ok"), ("b", "fail"), ("c", "fail"), ("d", "skip"), ("e", "ok"), ("f", "skip")]
    assert rows[0].seconds == 100.0 and rows[0].check == "force err 1e-12"
    assert rows[1].check == "RuntimeError: CUDA error: an illegal memory access"
    assert "tolerance" in rows[2].check and "time guard" in rows[5].check
    table = device_check.format_table(rows).splitlines()
    assert len(table) == 2 + len(rows) and all(r.name in table[i + 2] for i, r in enumerate(rows))
