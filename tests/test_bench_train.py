"""benchmarks/bench_train.py: the Cu-Ni dataset is deterministic and a tiny run prints the
curves and writes them (MACE left out: it needs its own venv)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_train  # noqa: E402
import cuni_dataset  # noqa: E402


def test_cuni_structures_are_deterministic_alloys_of_31_to_108_atoms() -> None:
    first = [cuni_dataset.make_structure(k, seed=3) for k in range(12)]
    again = [cuni_dataset.make_structure(k, seed=3) for k in range(12)]
    for a, b in zip(first, again):
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-12)
        assert list(a.numbers) == list(b.numbers)
    assert all(31 <= len(a) <= 108 and set(a.numbers) <= {28, 29} for a in first)
    assert any(len(a) % 2 for a in first)  # some have a vacancy


def test_time_to_and_checkpoints() -> None:
    assert bench_train.checkpoints(80.0, 4) == [10.0, 20.0, 40.0, 80.0]
    curve = [{"t": 10.0, "force_mae": 90.0}, {"t": 20.0, "force_mae": 40.0}]
    assert bench_train.time_to(curve, 50.0) == 20.0
    assert bench_train.time_to(curve, 10.0) is None


def test_tiny_run_prints_curves_and_writes_json(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLIP_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "result.json"
    threads = torch.get_num_threads()
    monkeypatch.setattr(bench_train, "keep_freed_memory", lambda: False)  # this process
    code = bench_train.main(["--models", "transformer-1.2k", "--train-size", "6",
                             "--test-size", "3", "--budget", "1.0", "--points", "2",
                             "--batch-size", "2", "--no-mace", "--json", str(out)])
    torch.set_num_threads(threads)
    assert code == 0
    text = capsys.readouterr().out
    assert "transformer-1.2k" in text and "MACE skipped" in text
    result = json.loads(out.read_text())["results"]["transformer-1.2k"]
    assert len(result["curve"]) == 2 and result["curve"][-1]["t"] >= 1.0
    assert result["infer_ms"] > 0 and np.isfinite(result["curve"][-1]["force_mae"])
    assert (tmp_path / "cache" / "cuni-emt-1-seed0-6-3" / "test.xyz").is_file()
