"""benchmarks/mace_peer.py and bench_families.py: the structures reach MACE unchanged, MACE
widths are matched to preset sizes, and the table's ratios are time over MACE's time. The
MACE run itself needs a mace-torch venv (``MACE_PYTHON``) and is skipped without one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_families  # noqa: E402
import mace_peer  # noqa: E402


def test_atoms_spec_rebuilds_the_same_structure() -> None:
    atoms = bench_families.cuni(2, seed=3)
    atoms.cell[0, 1] = 0.4  # a non-orthogonal cell
    atoms.pbc = [True, True, False]
    again = Atoms(**mace_peer.atoms_spec(atoms))
    np.testing.assert_allclose(again.positions, atoms.positions, rtol=0, atol=1e-12)
    np.testing.assert_allclose(again.cell.array, atoms.cell.array, rtol=0, atol=1e-12)
    assert list(again.numbers) == list(atoms.numbers) and list(again.pbc) == [True, True, False]
    assert set(atoms.numbers) == {28, 29} and len(atoms) == 32


def test_missing_interpreter_is_skipped_with_a_note(tmp_path, capsys) -> None:
    assert mace_peer.run(str(tmp_path / "no-python"), {}) is None
    assert "MACE skipped" in capsys.readouterr().out


def test_a_hung_interpreter_times_out_with_a_note(tmp_path, capsys) -> None:
    slow = tmp_path / "python"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    assert mace_peer.run(str(slow), {}, timeout=0.5) is None
    assert "no result within" in capsys.readouterr().out


def test_mace_width_nearest_on_a_log_scale() -> None:
    sizes = bench_families.MACE_SIZES
    widths = sorted(sizes)
    assert bench_families.mace_channels(sizes[widths[0]] // 3) == widths[0]
    assert bench_families.mace_channels(sizes[widths[-1]] * 3) == widths[-1]
    for small, large in zip(widths, widths[1:]):
        assert bench_families.mace_channels(sizes[small]) == small
        middle = (sizes[small] * sizes[large]) ** 0.5  # geometric mean: the boundary
        assert bench_families.mace_channels(int(middle * 0.99)) == small
        assert bench_families.mace_channels(int(middle * 1.01)) == large


def test_row_ratios_are_time_over_mace_time() -> None:
    times = {"infer_ms": {"float32": 30.0, "float64": 90.0}, "train_ms": 80.0}
    mace = {"infer_ms": {"float32": 300.0, "float64": 450.0}, "train_ms": 1600.0}
    cells = bench_families.row("x", 1000, times, mace, ["float32", "float64"]).split()
    assert cells[2:] == ["30.0", "0.10", "90.0", "0.20", "80.0", "0.05"]
    assert bench_families.row("x", 1000, times, None, ["float32"]).split()[-1] == "-"


def test_table_without_mace(capsys) -> None:
    args = ["--presets", "bpnn-1.2k", "--repeats", "1", "--dtypes", "float64", "--no-mace"]
    assert bench_families.main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert last[0] == "bpnn-1.2k" and float(last[2]) > 0 and last[3] == "-"


@pytest.mark.skipif(not os.path.exists(mace_peer.mace_python()), reason="no mace-torch venv")
def test_mace_times_a_small_cell() -> None:
    spec = {
        "channels": 8,
        "species": bench_families.SPECIES,
        "threads": 1,
        "repeats": 1,
        "clock": "process",
        "dtypes": ["float64"],
        "infer": mace_peer.atoms_spec(bench_families.cuni(1, seed=0)),
        "train": [mace_peer.atoms_spec(bench_families.cuni(1, seed=s)) for s in (1, 2)],
    }
    result = mace_peer.run(mace_peer.mace_python(), spec)
    assert result is not None
    assert result["params"] == bench_families.MACE_SIZES[8]
    assert result["infer_ms"]["float64"] > 0 and result["train_ms"] > 0
