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
    # both relax towards perfect fcc (same fractional coordinates) to within fmax 0.05 eV/Å:
    # the normalised RMSD stays small, ~0.01 Å per (V/N)^(1/3) = 2.3 Å
    assert 0 < wrong["relax_rmsd"] < 0.01


@pytest.mark.slow
def test_relax_parallel_matches_serial() -> None:
    structures = [_start(0), _start(1)]
    model = functools.partial(LennardJones, sigma=2.2, epsilon=0.4, rc=5.0, smooth=True)
    serial = relax.relaxation_errors(structures, model, EMT)
    parallel = relax.relaxation_errors(structures, model, EMT, jobs=2)
    assert parallel == pytest.approx(serial)


def test_failures_counted_with_stated_penalties() -> None:
    out = relax.relaxation_errors([_start(0)], EMT, EMT, max_steps=1)
    assert out["relax_oracle_failures"] == 1 and out["relax_rmsd"] is None
    pairs = [{"oracle_ok": True, "ok": False, "steps": 500, "energy_error": None, "rmsd": None,
              "displacement": None},
             {"oracle_ok": True, "ok": True, "steps": 10, "energy_error": 0.1, "rmsd": 0.2,
              "displacement": 0.05}]
    summary = relax.summarise(pairs, fixed_cell=True)
    assert summary["relax_failure_rate"] == 0.5
    assert summary["relax_failure_rate_se"] == pytest.approx(0.5)
    assert summary["relax_rmsd"] == pytest.approx(0.5 * (relax.FAILED_RMSD + 0.2))
    assert summary["relax_energy_error"] == pytest.approx(0.5 * (relax.FAILED_ENERGY_ERROR + 0.1))
    assert summary["relax_energy_error_converged"] == pytest.approx(0.1)
    assert summary["relax_adwt"] == pytest.approx(0.5 * np.mean(relax.ADWT_THRESHOLDS > 0.05))
    assert summary["relax_structures"] == 2


class _Raising(EMT):
    def calculate(self, *args, **kwargs):
        raise RuntimeError("model blew up")


def test_calculator_error_is_a_failure_not_a_crash() -> None:
    out = relax.relaxation_errors([_start(0), _start(1)], _Raising, EMT)
    assert out["relax_failure_rate"] == 1.0
    assert out["relax_energy_error"] == pytest.approx(relax.FAILED_ENERGY_ERROR)
    assert out["relax_energy_error_converged"] is None
    pair = relax.relax_pair(_start(0), _Raising, EMT)
    assert not pair["ok"] and "model blew up" in pair["reason"]


@pytest.mark.parametrize("amplitude", [0.02, 0.05, 0.1, 0.2, 0.3])
def test_rmsd_of_planted_displacements_in_symmetric_supercell(amplitude: float) -> None:
    ref = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    rng = np.random.default_rng(7)
    d = rng.normal(size=(len(ref), 3))
    d *= amplitude / np.sqrt((d * d).sum(axis=1).mean())  # RMS displacement = amplitude
    moved = ref.copy()
    moved.positions += d + np.array([5.0, -7.3, 2.2])  # plus a rigid shift across the cell
    moved.wrap()
    d -= d.mean(axis=0)
    expected = np.sqrt((d * d).sum(axis=1).mean()) / (ref.get_volume() / len(ref)) ** (1 / 3)
    got = relax.normalised_rmsd(moved, ref)
    assert got == pytest.approx(expected, rel=1e-9)
    assert 0.0 < got < 0.2  # neither "identical" nor "unmatched"
    assert relax.mean_displacement(moved, ref) == pytest.approx(
        np.linalg.norm(d, axis=1).mean(), rel=1e-9)


def test_rmsd_needs_the_same_atoms() -> None:
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    b = bulk("Cu", "bcc", a=2.87, cubic=True)
    with pytest.raises(ValueError, match="correspondence"):
        relax.normalised_rmsd(a, b)
    assert relax.normalised_rmsd(a, a.copy()) == pytest.approx(0.0, abs=1e-12)


def test_oracle_relaxations_are_reused_under_a_key() -> None:
    calls = []

    def oracle():
        calls.append(1)
        return EMT()

    for _ in range(2):
        relax.relaxation_errors([_start(3)], EMT, oracle, oracle_key="emt-test")
    assert len(calls) == 1


def test_drift_units() -> None:
    slope = 2e-6  # eV/atom/fs = 2 meV/atom/ps
    t_fs = np.arange(200) * 0.5
    e = -3.0 + slope * t_fs
    e[:40] += 1.0  # the discarded first 20 % must not matter
    assert md.energy_drift(e, dt_fs=0.5) == pytest.approx(2.0, rel=1e-6)


def test_md_identical_calculators() -> None:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    out = md.md_errors(atoms, EMT(), EMT(), temperature_K=300.0, steps=60)
    assert out["md_stability"] == 1.0 and out["md_unstable"] == 0.0
    assert out["rdf_error"] == pytest.approx(0.0, abs=1e-12)
    assert out["md_drift"] < 5.0  # meV/atom/ps at dt = 1 fs


def test_perfect_model_drift_at_500_steps() -> None:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    out = md.md_errors(atoms, EMT(), EMT(), temperature_K=300.0, steps=500)
    assert out["md_drift"] < 1e-3  # meV/atom/ps: the oracle against itself
    assert out["md_drift"] == pytest.approx(out["md_oracle_drift"], rel=1e-9)
    assert out["md_drift_se"] > 0 and out["rdf_error_se"] == pytest.approx(0.0, abs=1e-12)


def test_drift_standard_error_and_noise_flag() -> None:
    rng = np.random.default_rng(0)
    noise = 1e-6 * rng.normal(size=1000)  # eV/atom per step
    flat, flat_se = md.drift_with_error(-3.0 + noise, dt_fs=1.0)
    assert flat < 3 * flat_se  # no trend: the drift is at its noise floor
    slope = 1e-8  # eV/atom/fs = 0.01 meV/atom/ps
    tilted, tilted_se = md.drift_with_error(-3.0 + noise + slope * np.arange(1000), 1.0)
    assert tilted == pytest.approx(0.01, abs=3 * tilted_se) and tilted > 2 * tilted_se


def test_rdf_error_only_for_stable_runs_of_equal_length() -> None:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=3)
    hot = LennardJones(sigma=3.4, epsilon=1.0, rc=6.0)
    out = md.md_errors(atoms, hot, EMT(), temperature_K=300.0, steps=40)
    assert out["md_stability"] < 1.0 and out["md_unstable"] == 1.0
    assert out["rdf_error"] is None and out["md_oracle_stability"] == 1.0


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


def test_md_start_is_one_the_oracle_can_hold() -> None:
    oracle = LennardJones(sigma=3.4, epsilon=1.0, rc=6.0)
    bad = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    bad.rattle(0.05, seed=3)  # compressed for this LJ: the oracle's own run blows up
    good = bulk("Cu", "fcc", a=3.4 * 2 ** (1 / 6) * np.sqrt(2), cubic=True).repeat((2, 2, 2))
    assert md.stable_start([bad, good], oracle, "lj-test", 300.0, 40) is good
    assert md.stable_start([bad], oracle, "lj-test", 300.0, 40) is bad
