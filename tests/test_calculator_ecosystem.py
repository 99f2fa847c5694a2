"""ScalingCalculator inside ASE's optimizers, cell filters and MD, and with pymatgen."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.filters import FrechetCellFilter
from ase.md.langevin import Langevin
from ase.md.nptberendsen import NPTBerendsen
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS, FIRE
from test_calculator import methane, rattled_cu, smooth_potential

from mlip_scaling.calculators.ase import ScalingCalculator


@pytest.fixture
def calc() -> ScalingCalculator:
    return ScalingCalculator(smooth_potential(), dtype="float64")


def test_bfgs_relaxes_positions(calc):
    atoms = rattled_cu(strain=0.0)
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    assert BFGS(atoms, logfile=None).run(fmax=1e-3, steps=200)
    assert atoms.get_potential_energy() < e0
    assert np.abs(atoms.get_forces()).max() < 1e-3


def test_fire_relaxes_a_molecule(calc):
    mol = methane()
    mol.calc = calc
    assert FIRE(mol, logfile=None).run(fmax=5e-3, steps=1000)
    assert np.linalg.norm(mol.get_forces(), axis=1).max() < 5e-3


def test_fire_with_frechet_cell_filter_relaxes_the_cell(calc):
    atoms = rattled_cu(strain=0.03)
    atoms.calc = calc
    assert np.abs(atoms.get_stress()).max() > 5e-3
    volume0 = atoms.get_volume()
    assert FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-3, steps=1000)
    assert np.abs(atoms.get_stress()).max() < 1e-3 / 6  # fmax bound on the virial per atom
    assert np.abs(atoms.get_forces()).max() < 1e-3
    assert atoms.get_volume() != pytest.approx(volume0, rel=1e-3)
    # a cubic fcc crystal relaxes back to a cubic cell: equal edges, right angles
    lengths, angles = atoms.cell.cellpar()[:3], atoms.cell.cellpar()[3:]
    assert np.ptp(lengths) < 2e-2 and np.abs(angles - 90).max() < 0.5


def test_velocity_verlet_conserves_energy(calc):
    atoms = rattled_cu(strain=0.0)
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
    e0 = atoms.get_total_energy()
    dyn = VelocityVerlet(atoms, timestep=1 * units.fs)
    totals = []
    dyn.attach(lambda: totals.append(atoms.get_total_energy()), interval=5)
    dyn.run(200)
    assert np.abs(np.array(totals) - e0).max() / len(atoms) < 1e-4


def test_langevin_thermalises(calc):
    atoms = rattled_cu(strain=0.0, repeat=(2, 2, 2))
    atoms.calc = calc
    dyn = Langevin(atoms, timestep=2 * units.fs, temperature_K=600, friction=0.05, fixcm=False,
                   rng=np.random.default_rng(2))
    temps = []
    dyn.attach(lambda: temps.append(atoms.get_temperature()), interval=1)
    dyn.run(300)
    mean_t = np.mean(temps[100:])
    assert 300 < mean_t < 900 and np.all(np.isfinite(atoms.positions))


def test_npt_berendsen_changes_the_cell(calc):
    atoms = rattled_cu(strain=0.0)
    atoms.set_cell(atoms.cell * 1.03, scale_atoms=True)  # expanded: under tension
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(3))
    volume0 = atoms.get_volume()
    pressure0 = -atoms.get_stress()[:3].mean()
    dyn = NPTBerendsen(atoms, timestep=1 * units.fs, temperature_K=300, pressure_au=0.0,
                       taut=50 * units.fs, taup=100 * units.fs,
                       compressibility_au=1 / (100 * units.GPa))
    dyn.run(150)
    pressure = -atoms.get_stress()[:3].mean()
    assert atoms.get_volume() < 0.99 * volume0
    assert abs(pressure) < 0.3 * abs(pressure0)  # the barostat drives the pressure towards zero
    assert calc._neighbors.builds < 20  # small cell changes each step: the list was reused


def test_pymatgen_structure_through_ase_adaptor(calc):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    reference = rattled_cu(strain=0.01)
    structure = Structure(Lattice(reference.cell.array), reference.get_chemical_symbols(),
                          reference.positions, coords_are_cartesian=True)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calc
    reference.calc = ScalingCalculator(smooth_potential(), dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(),
                                                         abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(), reference.get_stress(), atol=1e-12)
