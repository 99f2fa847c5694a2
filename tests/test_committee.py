"""Committees of model files (mean and spread, batched) and the provenance of a calculator."""

from __future__ import annotations

import ase.db
import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from test_training_helpers import emt_structures

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.checkpoint import save_potential
from mlip_scaling.errors import ConfigError
from mlip_scaling.io_utils import file_hash
from mlip_scaling.models import registry
from mlip_scaling.models.potential import Potential
from mlip_scaling.training import TrainConfig, run_training


def random_model(path, seed: int, cutoff: float = 5.0):
    """A freshly initialised 1.2k-parameter transformer for Cu/Al saved at ``path``."""
    family, config = registry.get_preset("transformer-1.2k")
    config = {**config, "cutoff": cutoff}
    torch.manual_seed(seed)
    potential = Potential(registry.build_model(family, config), family, config, [13, 29],
                          {13: -0.5, 29: -0.2}, scale=0.3)
    return save_potential(path, potential)


def cu_cell(seed: int = 0, factor: float = 1.0):
    atoms = bulk("Cu", "fcc", a=3.6 * factor, cubic=True).repeat(2)
    atoms.numbers[::5] = 13
    atoms.positions += 0.05 * np.random.default_rng(seed).standard_normal(atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    folder = tmp_path_factory.mktemp("committee")
    return [random_model(folder / f"m{k}.pt", seed=k) for k in range(3)]


def _single(path, atoms):
    atoms = atoms.copy()
    atoms.calc = ScalingCalculator(path, device="cpu", dtype="float64")
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()


def test_committee_is_mean_and_std_of_members(members):
    atoms = cu_cell()
    single = [_single(path, atoms) for path in members]
    atoms.calc = ScalingCalculator(members, device="cpu", dtype="float64")
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    for got, k in ((energy, 0), (forces, 1), (stress, 2)):
        stacked = np.stack([s[k] for s in single])
        np.testing.assert_allclose(got, stacked.mean(0), rtol=1e-10, atol=1e-12)
        name = ("energy_std", "forces_std", "stress_std")[k]
        np.testing.assert_allclose(atoms.calc.results[name], stacked.std(0), rtol=1e-8,
                                   atol=1e-12)
    assert atoms.calc.results["energy_std"] > 0
    assert atoms.calc.get_property("energy_std", atoms) == atoms.calc.results["energy_std"]


def test_committee_predict_equals_calculate_and_folder_equals_list(members):
    structures = [cu_cell(seed) for seed in range(3)]
    batched = ScalingCalculator(members[0].parent, device="cpu", dtype="float64").predict(
        structures, batch_size=2)
    calc = ScalingCalculator(members, device="cpu", dtype="float64")
    for atoms, res in zip(structures, batched):
        atoms.calc = calc
        atoms.get_stress()
        for name in ("energy", "forces", "stress", "energy_std", "forces_std", "stress_std"):
            np.testing.assert_allclose(res[name], calc.results[name], rtol=1e-9, atol=1e-12)


def test_mixed_cutoffs_use_each_members_own_pairs(tmp_path, members):
    short = random_model(tmp_path / "short.pt", seed=7, cutoff=3.0)
    atoms = cu_cell()
    single = [_single(path, atoms)[0] for path in (members[0], short)]
    calc = ScalingCalculator([members[0], short], device="cpu", dtype="float64")
    assert calc.cutoff == 5.0
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(np.mean(single), rel=1e-10)
    assert calc.results["energy_std"] == pytest.approx(np.std(single), rel=1e-8)


def test_committee_needs_two_members(tmp_path, members):
    with pytest.raises(ConfigError, match="needs >= 2 model files, found 1"):
        ScalingCalculator([members[0]])
    (tmp_path / "one").mkdir()
    random_model(tmp_path / "one" / "m.pt", seed=0)
    with pytest.raises(ConfigError, match="one: a folder of model files needs >= 2"):
        ScalingCalculator(tmp_path / "one")


def test_provenance_in_ase_db_and_trajectory(tmp_path, members):
    atoms = cu_cell()
    atoms.calc = ScalingCalculator(members[0], device="cpu")
    assert atoms.calc.parameters["model"] == str(members[0].resolve())
    assert atoms.calc.todict()["model_sha256"] == file_hash(members[0])
    atoms.get_forces()
    with ase.db.connect(tmp_path / "out.db") as db:
        db.write(atoms)
    row = ase.db.connect(tmp_path / "out.db").get(id=1)
    assert row.calculator == "scalingcalculator"
    assert row.calculator_parameters["model_sha256"] == file_hash(members[0])
    assert row.calculator_parameters["model"] == str(members[0].resolve())
    committee = cu_cell()
    committee.calc = ScalingCalculator(members, device="cpu")
    committee.get_potential_energy()
    ase.io.write(tmp_path / "out.traj", committee)
    params = ase.io.read(tmp_path / "out.traj").calc.parameters
    assert params["model_sha256"] == [file_hash(p) for p in members]


@pytest.fixture(scope="module")
def trained_committee(tmp_path_factory):
    """Three replicates (seeds 0-2) of a 7k-parameter transformer trained on rattled
    4-atom Cu/Al fcc cells (EMT labels)."""
    folder = tmp_path_factory.mktemp("replicates")
    data = emt_structures(28, seed=3)
    for seed in range(3):
        cfg = TrainConfig(model="transformer", params=7000, batch_size=8, val_size=4,
                          test_size=0, epochs=25, lr=5e-3, energy_weight=20.0, seed=seed,
                          device="cpu", out=str(folder / f"r{seed}"), export="model.pt")
        run_training(cfg, source=data, verbose=False)
    return folder


def test_std_is_larger_far_from_the_training_data(trained_committee):
    calc = ScalingCalculator(trained_committee, device="cpu", dtype="float64")
    assert len(calc.members) == 3  # the runs' last.pt states are not members
    like = emt_structures(8, seed=99)
    far = []
    for atoms in like:
        for factor in (0.8, 1.5):  # strongly compressed and expanded cells
            atoms = atoms.copy()
            atoms.set_cell(atoms.cell * factor, scale_atoms=True)
            far.append(atoms)
    near_std = [r["energy_std"] / len(r["forces"]) for r in calc.predict(like)]
    far_std = [r["energy_std"] / len(r["forces"]) for r in calc.predict(far)]
    assert np.mean(far_std) > 3 * np.mean(near_std), (np.mean(far_std), np.mean(near_std))
