"""Relaxation and MD error metrics with cheap classical calculators (EMT, asap3, LJ)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from mlip_scaling.scaling.downstream import md, relax


def _start(seed: int = 0, strain: float = 0.02):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(seed)
    atoms.rattle(0.05, rng=rng)
    atoms.set_cell(atoms.cell.array * (1 + strain), scale_atoms=True)
    return atoms


def _wrong() -> LennardJones:
    return LennardJones(sigma=2.2, epsilon=0.4, rc=5.0, smooth=True)


def test_relax_identical_calculators_agree() -> None:
    asap3 = pytest.importorskip("asap3")
    out = relax.relaxation_errors([_start(0), _start(1, -0.02)], EMT, asap3.EMT)
    assert out["relax_failure_rate"] == pytest.approx(0.0, abs=1e-12)
    assert out["relax_energy_error"] < 0.02  # asap3 EMT differs from ASE EMT by meV
    assert out["relax_rmsd"] < 1e-2
    assert 0 < out["relax_steps"] <= 500


def test_relax_wrong_model_has_larger_errors() -> None:
    same = relax.relaxation_errors([_start(0)], EMT, EMT)
    wrong = relax.relaxation_errors([_start(0)], _wrong, EMT)
    assert same["relax_energy_error"] < 1e-9 and same["relax_rmsd"] < 1e-6
    assert wrong["relax_energy_error"] > 0.05
    # both relax to perfect fcc: same internal coordinates, so scale-free RMSD stays ~0
    assert wrong["relax_rmsd"] < 1e-3


@pytest.mark.slow
def test_relax_parallel_matches_serial() -> None:
    structures = [_start(0), _start(1)]
    model = functools.partial(LennardJones, sigma=2.2, epsilon=0.4, rc=5.0, smooth=True)
    serial = relax.relaxation_errors(structures, model, EMT)
    parallel = relax.relaxation_errors(structures, model, EMT, jobs=2)
    assert parallel == pytest.approx(serial)


def test_failure_and_unmatched_count_as_one() -> None:
    out = relax.relaxation_errors([_start(0)], EMT, EMT, max_steps=1)
    assert out["relax_oracle_failures"] == 1 and out["relax_rmsd"] is None
    pairs = [{"oracle_ok": True, "ok": False, "steps": 500, "energy_error": None, "rmsd": 0.0,
              "displacement": None},
             {"oracle_ok": True, "ok": True, "steps": 10, "energy_error": 0.1, "rmsd": 0.2,
              "displacement": 0.05}]
    summary = relax.summarise(pairs, fixed_cell=True)
    assert summary["relax_failure_rate"] == pytest.approx(0.5, rel=1e-12)
    assert summary["relax_rmsd"] == pytest.approx(0.6)
    assert summary["relax_energy_error"] == pytest.approx(0.1)
    assert summary["relax_adwt"] == pytest.approx(0.5 * np.mean(relax.ADWT_THRESHOLDS > 0.05))


def test_unmatched_structures_give_one() -> None:
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    b = bulk("Cu", "bcc", a=2.87, cubic=True).repeat((2, 1, 1))
    assert relax.normalised_rmsd(a, b) == pytest.approx(1.0, rel=1e-12)
    assert relax.normalised_rmsd(a, a.copy()) == pytest.approx(0.0, abs=1e-8)


def test_fixed_cell_adwt() -> None:
    out = relax.relaxation_errors([_start(0)], EMT, EMT, fixed_cell=True)
    assert out["relax_adwt"] == pytest.approx(1.0)
    wrong = relax.relaxation_errors([_start(0)], _wrong, EMT, fixed_cell=True)
    assert wrong["relax_adwt"] <= 1.0


def test_drift_units() -> None:
    slope = 2e-6  # eV/atom/fs = 2 meV/atom/ps
    t_fs = np.arange(200) * 0.5
    e = -3.0 + slope * t_fs
    e[:40] += 1.0  # the discarded first 20 % must not matter
    assert md.energy_drift(e, dt_fs=0.5) == pytest.approx(2.0, rel=1e-6)


def test_md_identical_calculators() -> None:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    out = md.md_errors(atoms, EMT(), EMT(), temperature_K=300.0, steps=60)
    assert out["md_stability"] == pytest.approx(1.0, rel=1e-12)
    assert out["rdf_error"] == pytest.approx(0.0, abs=1e-12)
    assert out["md_drift"] < 5.0  # meV/atom/ps at dt = 1 fs


def test_md_wrong_calculator_larger_rdf_error() -> None:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    out = md.md_errors(atoms, _wrong(), EMT(), temperature_K=300.0, steps=60)
    assert out["rdf_error"] > 0.01  # identical calculators give exactly 0


def test_md_blow_up_detected() -> None:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=3)  # compressed LJ: symmetry broken -> runaway
    hot = md.run_nve(atoms, LennardJones(sigma=3.4, epsilon=1.0, rc=6.0), 300.0, 40)
    assert hot.stability < 1.0 and hot.reason
    assert len(hot.energy_per_atom) == round(hot.stability * 40)


def test_rdf_peak_at_nearest_neighbour() -> None:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    r_max = md.rdf_cutoff(atoms)
    assert r_max < 0.5 * 3 * 3.61
    g = md.rdf([atoms.positions], atoms, r_max, n_bins=50)
    centres = (np.arange(50) + 0.5) * r_max / 50
    assert abs(centres[np.argmax(g)] - 3.61 / np.sqrt(2)) < r_max / 50
