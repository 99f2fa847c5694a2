"""ScalingCalculator: physics (finite differences, ASE's LJ), batching, dtypes, neighbour reuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, fcc111, molecule
from ase.calculators.calculator import PropertyNotImplementedError, compare_atoms
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.calculators.lj import LennardJones as AseLJ
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from torch import nn

from mlip_scaling import keys
from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.models.potential import Potential

CUTOFF = 5.0


class SmoothPair(nn.Module):
    """LJ pair energy times a cosine cutoff: smooth at the cutoff (for MD and relaxations)."""

    direct_forces = False

    def __init__(self, sigma: float = 2.3, epsilon: float = 0.1, cutoff: float = CUTOFF) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.sigma = nn.Parameter(torch.tensor(sigma))
        self.epsilon = epsilon

    def forward(self, data: dict) -> dict:
        r = data[keys.EDGE_LENGTHS]
        sr6 = (self.sigma / r) ** 6
        envelope = 0.5 * (torch.cos(torch.pi * r / self.cutoff) + 1.0)
        pair = 2.0 * self.epsilon * (sr6 * sr6 - sr6) * envelope
        atomic = torch.zeros(len(data[keys.POSITIONS]), dtype=r.dtype, device=r.device)
        return {keys.ATOMIC_ENERGIES: atomic.index_add(0, data[keys.EDGE_INDEX][0], pair)}


def smooth_potential(dtype: torch.dtype = torch.float64) -> Potential:
    pot = Potential(SmoothPair(), "pair", {"cutoff": CUTOFF}, species=[1, 6, 29],
                    reference_energies={29: -0.5, 6: -1.0, 1: -0.2})
    return pot.to(dtype)


def lj_potential(lj_model) -> Potential:
    return Potential(lj_model, "lj", {"cutoff": CUTOFF}, species=[1, 6, 29]).double()


def rattled_cu(repeat=(2, 2, 2), seed: int = 1, strain: float = 0.02) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True) * repeat
    shape = np.array([[1.0, 0.3, 0.0], [0.3, -0.5, 0.2], [0.0, 0.2, 0.0]])
    cell = atoms.cell.array @ (np.eye(3) + strain * shape)
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def methane() -> Atoms:
    mol = molecule("CH4")
    mol.positions *= 1.6
    mol.rattle(0.02, seed=3)
    return mol


def test_forces_and_stress_match_finite_differences_periodic():
    atoms = rattled_cu()
    atoms.calc = ScalingCalculator(smooth_potential(), dtype="float64")
    np.testing.assert_allclose(
        atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-4), atol=2e-7
    )
    np.testing.assert_allclose(
        atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-5), atol=2e-8
    )
    assert np.abs(atoms.get_stress()).max() > 1e-3  # strained: a real, non-trivial stress
    np.testing.assert_allclose(atoms.get_potential_energies().sum(), atoms.get_potential_energy())
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(
        atoms.get_potential_energy(), rel=1e-12)


def test_molecule_forces_and_no_stress():
    for atoms in (methane(), fcc111("Cu", size=(2, 2, 3), vacuum=5.0)):
        atoms.rattle(0.03, seed=4)
        atoms.calc = ScalingCalculator(smooth_potential(), dtype="float64")
        np.testing.assert_allclose(
            atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-4), atol=2e-7
        )
        with pytest.raises(PropertyNotImplementedError):
            atoms.get_stress()
        assert np.isfinite(atoms.get_potential_energy())


def test_sign_and_values_match_ase_lennard_jones(lj_model):
    atoms = rattled_cu()
    atoms.calc = ScalingCalculator(lj_potential(lj_model), dtype="float64")
    ref = atoms.copy()
    ref.calc = AseLJ(sigma=2.3, epsilon=0.1, rc=CUTOFF, smooth=False)
    np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(), ref.get_stress(), atol=1e-10)


def test_batched_predict_equals_single():
    structures = [rattled_cu(seed=s, repeat=r) for s, r in ((1, (1, 1, 2)), (2, (2, 2, 2)))]
    structures += [methane(), fcc111("Cu", size=(2, 2, 2), vacuum=4.0), rattled_cu(seed=5)]
    calc = ScalingCalculator(smooth_potential(), dtype="float64")
    batched = calc.predict(structures, batch_size=3)
    assert len(batched) == len(structures)
    for atoms, res in zip(structures, batched):
        atoms.calc = calc
        np.testing.assert_allclose(res["energy"], atoms.get_potential_energy(), rtol=1e-13)
        np.testing.assert_allclose(res["forces"], atoms.get_forces(), atol=1e-12)
        np.testing.assert_allclose(res["energies"], atoms.get_potential_energies(), atol=1e-12)
        assert res["forces"].shape == (len(atoms), 3)
        if atoms.pbc.all():
            np.testing.assert_allclose(res["stress"], atoms.get_stress(), atol=1e-13)
        else:
            assert "stress" not in res
    one_by_one = calc.predict(structures, batch_size=1)
    for a, b in zip(batched, one_by_one):
        np.testing.assert_allclose(a["forces"], b["forces"], atol=1e-12)


def test_float32_agrees_with_float64_and_both_coexist():
    default = torch.get_default_dtype()
    pot64 = smooth_potential(torch.float64)
    calc64 = ScalingCalculator(pot64, dtype="float64")
    calc32 = ScalingCalculator(pot64, dtype="float32")
    assert pot64.dtype == torch.float64  # the caller's potential was copied, not converted
    assert calc32.potential.dtype == torch.float32 and calc64.potential.dtype == torch.float64
    atoms = rattled_cu()
    results = {}
    for name, calc in (("64", calc64), ("32", calc32), ("64 again", calc64)):
        atoms.calc = calc
        results[name] = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress())
        assert torch.get_default_dtype() == default
    e64, f64, s64 = results["64"]
    e32, f32, s32 = results["32"]
    assert abs(e32 - e64) / len(atoms) < 1e-5
    np.testing.assert_allclose(f32, f64, atol=1e-4)
    np.testing.assert_allclose(s32, s64, atol=1e-5)
    assert results["64 again"][0] == pytest.approx(e64, rel=1e-12)
    assert f32.dtype == np.float64  # ASE receives float64 arrays either way


def test_neighbor_reuse_equals_rebuild_over_md():
    atoms = rattled_cu(repeat=(2, 2, 2), strain=0.0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=1500, rng=np.random.default_rng(0))
    reuse = ScalingCalculator(smooth_potential(), dtype="float64", skin=0.5)
    rebuild = ScalingCalculator(smooth_potential(), dtype="float64", skin=0.0)
    atoms.calc = reuse
    probe = atoms.copy()
    probe.calc = rebuild
    start = atoms.positions.copy()
    dyn = VelocityVerlet(atoms, timestep=2 * units.fs)
    for _ in range(60):
        dyn.run(1)
        probe.positions = atoms.positions
        np.testing.assert_allclose(probe.get_forces(), atoms.get_forces(), rtol=0, atol=1e-12)
        assert probe.get_potential_energy() == pytest.approx(atoms.get_potential_energy(),
                                                             abs=1e-12)
    assert np.abs(atoms.positions - start).max() > 0.5  # atoms moved beyond the skin
    assert 1 < reuse._neighbors.builds < 30  # the list was kept for many steps and rebuilt
    assert rebuild._neighbors.builds >= 60


def test_pair_beyond_cutoff_is_not_seen():
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, CUTOFF + 0.2]])
    dimer.calc = ScalingCalculator(smooth_potential(), dtype="float64", skin=0.5)
    e_far = dimer.get_potential_energy()
    assert e_far == pytest.approx(-1.0)  # reference energies only
    np.testing.assert_allclose(dimer.get_forces(), 0.0, rtol=0, atol=1e-12)
    dimer.positions[1, 2] = CUTOFF - 0.5  # within the cutoff: the pair counts
    assert dimer.get_potential_energy() != pytest.approx(-1.0)


def test_check_state_agrees_with_ase():
    calc = ScalingCalculator(smooth_potential(), dtype="float64")
    atoms = rattled_cu()
    atoms.calc = calc
    atoms.get_potential_energy()
    edits = {
        "none": lambda a: None,
        "positions": lambda a: a.positions.__setitem__((0, 0), a.positions[0, 0] + 1e-9),
        "numbers": lambda a: a.numbers.__setitem__(0, 1),
        "cell": lambda a: a.set_cell(a.cell * 1.001),
        "pbc": lambda a: a.set_pbc([True, True, False]),
        "charges": lambda a: a.set_initial_charges(np.ones(len(a))),
    }
    for edit in edits.values():
        other = atoms.copy()
        edit(other)
        assert sorted(calc.check_state(other)) == sorted(compare_atoms(calc.atoms, other))


def test_unknown_element_is_named():
    atoms = bulk("Fe", "bcc", a=2.87) * (2, 2, 2)
    atoms.calc = ScalingCalculator(smooth_potential(), dtype="float64")
    with pytest.raises(DataError, match=r"element Fe \(Z=26\) is not known") as err:
        atoms.get_potential_energy()
    assert "\n" not in str(err.value)
    calc = ScalingCalculator(smooth_potential(), dtype="float64")
    with pytest.raises(DataError, match=r"structure 1 \(Fe8\): element Fe"):
        calc.predict([rattled_cu(), atoms])


def test_nan_positions_and_bad_cell_are_clear_errors():
    calc = ScalingCalculator(smooth_potential(), dtype="float64")
    atoms = rattled_cu()
    atoms.positions[3, 1] = np.nan
    atoms.calc = calc
    with pytest.raises(DataError, match="position of atom 3 is not finite"):
        atoms.get_forces()
    flat = Atoms("Cu2", positions=[[0, 0, 0], [1.5, 1.5, 0]], cell=[4, 4, 0], pbc=True)
    flat.calc = calc
    with pytest.raises(DataError, match="cell vector 2"):
        flat.get_potential_energy()


def test_bad_options():
    with pytest.raises(ConfigError, match="dtype"):
        ScalingCalculator(smooth_potential(), dtype="float16")
    with pytest.raises(ConfigError, match="skin"):
        ScalingCalculator(smooth_potential(), skin=-1.0)
    with pytest.raises(ConfigError, match="model must be"):
        ScalingCalculator(object())
    calc = ScalingCalculator(smooth_potential())
    assert calc.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="batch_size"):
        calc.predict([methane()], batch_size=0)


@pytest.mark.slow
def test_compiled_model_gives_the_same_results():
    atoms = rattled_cu()
    atoms.calc = ScalingCalculator(smooth_potential(), dtype="float64")
    expected = atoms.get_forces(), atoms.get_stress()
    atoms.calc = ScalingCalculator(smooth_potential(), dtype="float64", compile=True)
    for _ in range(2):  # second call: new edge count, no stale graph
        np.testing.assert_allclose(atoms.get_forces(), expected[0], atol=1e-12)
        np.testing.assert_allclose(atoms.get_stress(), expected[1], atol=1e-12)
        atoms.rattle(0.02, seed=7)
        reference = atoms.copy()
        reference.calc = ScalingCalculator(smooth_potential(), dtype="float64")
        expected = reference.get_forces(), reference.get_stress()
