"""Oracles by name: labels, the mixed dispatcher, the registry and the error messages."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT

from mlip_scaling.data.oracles import ORACLES, get_oracle, oracle_elements
from mlip_scaling.errors import ConfigError


def _rattled(symbol: str):
    atoms = bulk("Cu", cubic=True) if symbol == "Cu" else bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, seed=0)
    return atoms


@pytest.mark.parametrize("name", ["emt", "sw", "tersoff", "tersoff:Si", "mixed:emt+sw",
                                  "module:ase.calculators.emt:EMT"])
def test_oracles_label_structures(name):
    atoms = _rattled("Cu" if "emt" in name and "+" not in name else "Si")
    atoms.calc = get_oracle(name, trusted=name.startswith("module:"))  # as if typed
    forces = atoms.get_forces()
    assert np.isfinite(atoms.get_potential_energy()) and forces.shape == (len(atoms), 3)
    assert np.abs(forces.sum(axis=0)).max() < 1e-8  # Newton's third law
    assert np.abs(forces).max() > 1e-3  # a rattled crystal is not at equilibrium


def test_forces_are_energy_gradients():
    atoms = _rattled("Si")
    atoms.calc = get_oracle("sw")
    f = atoms.get_forces()[0, 0]
    h = 1e-5
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.calc = get_oracle("sw")
        moved.positions[0, 0] += sign * h
        energies.append(moved.get_potential_energy())
    assert f == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=1e-5)


def test_each_call_gives_a_fresh_calculator():
    assert get_oracle("emt") is not get_oracle("emt")
    assert get_oracle("mixed:emt+sw") is not get_oracle("mixed:emt+sw")


def test_mixed_dispatches_by_chemistry():
    mixed = get_oracle("mixed:emt+sw")
    for atoms, reference in ((_rattled("Cu"), EMT()), (_rattled("Si"), get_oracle("sw"))):
        atoms.calc = mixed
        ref = atoms.copy()
        ref.calc = reference
        assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(),
                                                             abs=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-12)
        np.testing.assert_allclose(atoms.get_stress(), ref.get_stress(), atol=1e-12)
    slab = fcc111("Au", (2, 2, 3), vacuum=5.0)  # pbc T,T,F: no stress label
    slab.calc = mixed
    assert np.isfinite(slab.get_potential_energy())
    assert "stress" not in slab.calc.results


def test_registry_describes_oracles():
    assert {"emt", "sw", "tersoff", "mixed:emt+sw", "eam:FILE", "teacher:sevennet",
            "teacher:chgnet", "module:factory"} <= set(ORACLES)
    assert all(info.description for info in ORACLES.values())
    assert set(oracle_elements("mixed:emt+sw")) == {"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt",
                                                    "Si"}
    assert oracle_elements("tersoff:PtC") == ("C", "Pt")
    assert oracle_elements("module:x:y") == ()


def test_oracle_errors():
    with pytest.raises(ConfigError, match="unknown oracle 'nope'.*emt.*sw"):
        get_oracle("nope")
    mixed = bulk("Cu") + bulk("Si")
    mixed.calc = get_oracle("mixed:emt+sw")
    with pytest.raises(ConfigError, match="metal-only"):
        mixed.get_potential_energy()
    with pytest.raises(ConfigError, match="no such potential file"):
        get_oracle("eam:/nonexistent.eam.alloy")
    with pytest.raises(ConfigError, match="unknown Tersoff parameter set 'XY'"):
        get_oracle("tersoff:XY")
    with pytest.raises(ConfigError, match="cannot import"):
        get_oracle("module:no_such_module_xyz:factory", trusted=True)
    with pytest.raises(ConfigError, match="unknown teacher"):
        get_oracle("teacher:nope")


@pytest.mark.parametrize("kind,package", [("sevennet", "sevenn"), ("chgnet", "chgnet")])
def test_teacher_without_extra_names_it(kind, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    with pytest.raises(ConfigError, match=r"mlip-scaling\[teacher\]") as exc:
        get_oracle(f"teacher:{kind}")
    assert "\n" not in str(exc.value)
