"""Freed memory is kept for reuse in the package's own processes (glibc ``mallopt``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mlip_scaling import procs
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model

_CHURN = r"""
import json, resource, sys
import torch
from mlip_scaling.procs import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for k in range(45):  # 64 MiB tensors, allocated and freed like the edge tensors of a step
    if k == 35:
        start = faults()
    t = torch.ones(16 * 1024 * 1024)
    del t
print(json.dumps({"applied": applied, "faults_per_alloc": (faults() - start) / 10}))
"""


def _churn(setting: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHURN, setting], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(procs._MALLOPT is None, reason="libc has no mallopt (not glibc)")
def test_keep_freed_memory_stops_page_faults_of_repeated_large_tensors() -> None:
    off, on = _churn("off"), _churn("on")
    assert on["applied"] and not off["applied"]
    assert off["faults_per_alloc"] > 5000  # 64 MiB in fresh 4 KiB pages (or fewer huge pages)
    assert on["faults_per_alloc"] < off["faults_per_alloc"] / 4


def test_keep_freed_memory_is_harmless_without_mallopt(monkeypatch) -> None:
    monkeypatch.setattr(procs, "_MALLOPT", None)
    assert procs.keep_freed_memory() is False


def test_keep_freed_memory_can_be_switched_off(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(procs, "_MALLOPT", lambda *args: calls.append(args) or 1)
    monkeypatch.setenv(procs.KEEP_MEMORY_ENV, "0")
    assert procs.keep_freed_memory() is False and calls == []
    monkeypatch.setenv(procs.KEEP_MEMORY_ENV, "1")
    assert procs.keep_freed_memory() is True
    assert (-4, 0) in calls and (-3, 32 * 1024 * 1024) in calls  # M_MMAP_MAX, M_MMAP_THRESHOLD


def test_entry_points_apply_it(monkeypatch) -> None:
    from mlip_scaling.calculators import ase as calc_module
    from mlip_scaling.training import cli

    calls = []
    monkeypatch.setattr(calc_module, "keep_freed_memory", lambda: calls.append("calc"))
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("train"))
    config = {"cutoff": 3.0, "num_layers": 1, "hidden_channels": 4, "num_heads": 1,
              "ffn_hidden": 4, "num_radial": 2}
    torch.manual_seed(0)
    potential = Potential(build_model("transformer", config), "transformer", config, [29])
    calc_module.ScalingCalculator(potential, device="cpu")
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert calls == ["calc", "train"]
