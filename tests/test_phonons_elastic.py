"""Phonon and elastic-constant metrics: published EMT values, an independent phonon code,
zero error of the oracle against itself, and the exact error of a scaled oracle."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.units import GPa

from mlip_scaling.scaling.downstream.elastic import bulk_modulus, elastic_errors, elastic_tensor
from mlip_scaling.scaling.downstream.phonons import (
    frequencies,
    phonon_errors,
    supercell_repeats,
)
from mlip_scaling.scaling.metrics import produced_by, select


class ScaledEMT(Calculator):
    """EMT with every result multiplied by ``factor``: same equilibrium, force constants
    and elastic constants times ``factor``, frequencies times sqrt(factor)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor, self.emt = factor, EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.emt.calculate(atoms, properties, system_changes)
        self.results = {k: self.factor * np.asarray(v) for k, v in self.emt.results.items()}


class StretchedEMT(Calculator):
    """E(x) = E_EMT(x / s): the EMT equilibrium stretched by ``s``; at its own equilibrium
    every frequency is the EMT one divided by ``s``."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, s: float) -> None:
        super().__init__()
        self.s, self.emt = s, EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.set_cell(work.cell.array / self.s, scale_atoms=True)
        self.emt.calculate(work, properties, all_changes)
        r = self.emt.results
        self.results = {"energy": r["energy"], "free_energy": r["energy"],
                        "forces": r["forces"] / self.s}
        if "stress" in r:
            self.results["stress"] = r["stress"] / self.s**3


def _relaxed(symbol: str, **kw):
    atoms = bulk(symbol, **kw)
    atoms.calc = EMT()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-5)
    return atoms


def test_emt_elastic_constants_match_published_values():
    """EMT Ag: C11 125.9, C12 87.3, C44 54.2 GPa (calorine's elastic tutorial); EMT Cu:
    the bulk modulus of an equation-of-state fit (134.4 GPa, ASE's EOS tutorial)."""
    c = elastic_tensor(_relaxed("Ag"), EMT())
    assert c[0, 0] == pytest.approx(125.9, abs=0.3)
    assert c[0, 1] == pytest.approx(87.3, abs=0.3)
    assert c[3, 3] == pytest.approx(54.2, abs=0.3)
    assert np.abs(c[:3, 3:]).max() < 0.05  # cubic: no normal-shear coupling
    cu = _relaxed("Cu", cubic=True)
    c = elastic_tensor(cu, EMT())
    volumes, energies = [], []
    for x in np.linspace(0.99, 1.01, 5):
        a = cu.copy()
        a.set_cell(cu.cell.array * x, scale_atoms=True)
        a.calc = EMT()
        volumes.append(a.get_volume())
        energies.append(a.get_potential_energy())
    eos_b = EquationOfState(volumes, energies).fit()[2] / GPa
    assert bulk_modulus(c) == pytest.approx(eos_b, rel=0.01)
    assert bulk_modulus(c) == pytest.approx(134.4, abs=1.0)
    assert c[0, 0] > c[0, 1] > 0 and c[3, 3] > 0


def test_emt_cu_phonons_match_ase_phonons(tmp_path):
    """Frequencies at the q-points of a 4x4x4 supercell equal ASE's Phonons (an
    independent implementation: displacements, Fourier-interpolated dynamical matrix)."""
    from ase.phonons import Phonons

    cu = _relaxed("Cu")
    assert supercell_repeats(cu.cell.array, 8.0) == (4, 4, 4)
    mine = frequencies(cu, EMT(), 8.0)
    ph = Phonons(cu, EMT(), supercell=(4, 4, 4), delta=0.01, name=str(tmp_path / "ph"))
    ph.run()
    ph.read(acoustic=False)
    q = np.stack(np.meshgrid(*[np.arange(4) / 4] * 3, indexing="ij"), -1).reshape(-1, 3)
    theirs = np.sort(ph.band_structure(q).ravel() / units._hplanck * units._e / 1e12)
    assert np.abs(mine - theirs).max() < 1e-4
    assert 7.5 < mine.max() < 8.5  # THz (experiment: 7.2; EMT is a little stiffer)
    assert np.abs(mine[:3]).max() < 1e-3  # acoustic modes at Γ


def _structures():
    cu = bulk("Cu", "fcc", a=3.62)
    alloy = bulk("Cu", "fcc", a=3.65, cubic=True)  # 4 atoms
    alloy.numbers[1] = 79  # Cu3Au: internal relaxation under strain is needed
    alloy.rattle(0.02, seed=2)
    return [cu, alloy]


def test_phonons_of_the_oracle_and_of_a_scaled_oracle():
    """Zero error against itself; EMT x 1.21 has every frequency x 1.1 at the same
    equilibrium, so its error is 0.1 x the mean |ν| of each structure."""
    structures = _structures()
    same = phonon_errors(structures, EMT, EMT, min_length=5.0, oracle_key="emt")
    assert select(same, "phonons") == same
    assert same["phonon_structures"] == 2
    assert same["phonon_freq_mae"] == pytest.approx(0.0, abs=1e-9)
    assert same["phonon_imag_fraction"] == 0.0
    scaled = phonon_errors(structures, lambda: ScaledEMT(1.21), EMT, min_length=5.0,
                           oracle_key="emt")
    expect = [0.1 * np.mean(np.abs(frequencies(_relaxed_copy(a), EMT(), 5.0)))
              for a in structures]
    assert scaled["phonon_freq_mae"] == pytest.approx(np.mean(expect), rel=1e-3)
    assert scaled["phonon_freq_mae_se"] == pytest.approx(  # SE of two: relaxations differ
        np.std(expect, ddof=1) / np.sqrt(2), rel=0.1)


def test_elastic_constants_of_the_oracle_and_of_a_scaled_oracle():
    """Zero error against itself; EMT x 1.21 has every C_ij and B x 1.21."""
    structures = _structures()
    same = elastic_errors(structures, EMT, EMT, oracle_key="emt")
    assert set(same) == set(produced_by("elastic"))
    assert same["elastic_mae"] == pytest.approx(0.0, abs=1e-6)
    assert same["elastic_structures"] == 2
    scaled = elastic_errors(structures, lambda: ScaledEMT(1.21), EMT, oracle_key="emt")
    tensors = [elastic_tensor(_relaxed_copy(a), EMT()) for a in structures]
    upper = np.triu_indices(6)
    assert scaled["elastic_mae"] == pytest.approx(
        np.mean([0.21 * np.abs(c[upper]).mean() for c in tensors]), rel=1e-2)
    assert scaled["bulk_modulus_error"] == pytest.approx(
        np.mean([0.21 * bulk_modulus(c) for c in tensors]), rel=1e-2)


def _relaxed_copy(atoms):
    from mlip_scaling.scaling.downstream.phonons import FMAX
    from mlip_scaling.scaling.downstream.relax import relax

    return relax(atoms, EMT(), FMAX, 500).atoms


def test_phonons_of_a_stretched_oracle_on_the_same_supercell():
    """A model whose relaxed cell is 10 % larger still gets the oracle's supercell (same
    modes, though its own heights would need fewer repeats) and frequencies / 1.1."""
    cu = bulk("Cu", "fcc", a=3.59)
    ref = frequencies(_relaxed_copy(cu), EMT(), 6.5)
    out = phonon_errors([cu], lambda: StretchedEMT(1.1), EMT, min_length=6.5)
    assert supercell_repeats(cu.cell.array * 1.1, 6.5) != supercell_repeats(cu.cell.array, 6.5)
    # 2 %: each relaxation stops within ~0.1 GPa of zero stress (fmax), and the volume
    # that leaves moves the frequencies by ~1e-3 of themselves, ~1 % of this difference
    assert out["phonon_freq_mae"] == pytest.approx(np.mean(np.abs(ref)) * (1 - 1 / 1.1),
                                                   rel=2e-2)
