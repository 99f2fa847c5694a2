"""GemNet-OC computes fairchem-core 1.10's ``gemnet_oc`` function; its checkpoints import.

The fixtures in tests/data/fairchem/gemnet_* were made by benchmarks/make_gemnet_fixtures.py
with fairchem-core 1.10.0: both file layouts written by fairchem's own trainer after a few
training steps of a tiny model with all four optional interactions, four cutoffs and active
neighbour caps, and the energies and forces of fairchem's own ``OCPCalculator`` (float64).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from mlip_scaling import ScalingCalculator
from mlip_scaling.checkpoint import potential_from_dict
from mlip_scaling.models.equiformer_v2.fairchem_import import (
    FairchemFileError,
    convert_fairchem,
    import_fairchem,
)
from mlip_scaling.models.equiformer_v2.fairchem_pickle import read_fairchem_file
from mlip_scaling.scaling.cli import main as scaling_main

DATA = Path(__file__).parent / "data" / "fairchem"
#: agreement asked of energies (eV) and forces (eV/Å) with fairchem's calculator
TOLERANCE = 1e-10


def _reference(name: str) -> tuple[list[Atoms], dict]:
    ref = torch.load(DATA / f"{name}_reference.pt", weights_only=True)
    atoms = [
        Atoms(numbers=z, positions=p.numpy(), cell=c.numpy(), pbc=True)
        for z, p, c in zip(ref["numbers"], ref["positions"], ref["cells"])
    ]
    return atoms, ref


def _predict(calc: ScalingCalculator, atoms: list[Atoms]) -> tuple[np.ndarray, np.ndarray]:
    results = calc.predict(atoms)
    return (
        np.array([float(r["energy"]) for r in results]),
        np.concatenate([r["forces"] for r in results]),
    )


@pytest.mark.parametrize("name", ["gemnet_direct", "gemnet_grad"])
@pytest.mark.parametrize(
    ("source", "flags", "layout"),
    [
        ("training", [], "training"),  # fairchem's calculator predicts with the live weights
        ("training", ["--weights", "ema"], "inference"),  # the EMA = the file saved for inference
        ("inference", [], "inference"),
    ],
)
def test_imported_gemnet_reproduces_fairchems_calculator(tmp_path, name, source, flags, layout):
    out = tmp_path / "gemnet.pt"
    path = DATA / f"{name}_{source}.pt"
    assert scaling_main(["import-fairchem", str(path), "--out", str(out), *flags]) == 0
    atoms, ref = _reference(name)
    calc = ScalingCalculator(out, device="cpu", dtype="float64")
    assert calc.potential.family == "gemnet"
    assert calc.potential.direct_forces == (name == "gemnet_direct")
    energy, forces = _predict(calc, atoms)
    want_e, want_f = ref[layout]["energy"].numpy(), ref[layout]["forces"].numpy()
    assert np.abs(energy - want_e).max() <= TOLERANCE
    assert np.abs(forces - want_f).max() <= TOLERANCE
    assert np.abs(want_f).max() > 1e-2  # forces that matter


def test_live_and_ema_weights_are_different_functions():
    _, ref = _reference("gemnet_grad")
    assert np.abs(ref["training"]["energy"] - ref["inference"]["energy"]).max() > 1e-3


def test_fairchem_settings_resolve_to_the_four_graphs():
    converted = import_fairchem(DATA / "gemnet_direct_training.pt")
    cfg = converted["model"]["config"]
    assert converted["cutoff"] == cfg["cutoff"] == 4.6  # fairchem's cutoff_aint
    assert (cfg["cutoff_main"], cfg["cutoff_qint"], cfg["cutoff_aeaint"]) == (4.0, 3.3, 3.7)
    assert (
        cfg["max_neighbors"],
        cfg["max_neighbors_qint"],
        cfg["max_neighbors_aeaint"],
        cfg["max_neighbors_aint"],
    ) == (14, 8, 10, 20)
    assert cfg["forces_coupled"] and cfg["sbf"] == "legendre_outer"
    assert converted["scale"] == 1.25  # fairchem's energy and force rmsd
    ckpt = read_fairchem_file(DATA / "gemnet_direct_training.pt")
    scale = "int_blocks.1.quad_interaction.scale_sbf_sum.scale_factor"
    assert converted["state_dict"][scale] == ckpt["state_dict"][scale] != 1.0


def test_unfitted_scale_factor_means_one():
    """fairchem multiplies by a ScaleFactor only when it is non-zero (fitted)."""
    ckpt = read_fairchem_file(DATA / "gemnet_grad_inference.pt")
    atoms, _ = _reference("gemnet_grad")
    name = "int_blocks.0.trip_interaction.scale_cbf_sum.scale_factor"

    def energy(value: float) -> np.ndarray:
        edited = copy.deepcopy(ckpt)
        edited["state_dict"][name] = torch.tensor(value)
        calc = ScalingCalculator(
            potential_from_dict(convert_fairchem(edited)), device="cpu", dtype="float64"
        )
        return _predict(calc, atoms)[0]

    assert np.abs(energy(0.0) - energy(1.0)).max() < 1e-12
    assert np.abs(energy(0.0) - energy(1.7)).max() > 1e-4


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(rbf={"name": "spherical_bessel"}), "rbf="),
        (lambda m: m.update(cbf={"name": "gaussian"}), "cbf="),
        (lambda m: m.update(sbf={"name": "gaussian_outer"}), "sbf="),
        (lambda m: m.update(envelope={"name": "exponential"}), "envelope="),
        (lambda m: m.update(scale_basis=True), "scale_basis=True"),
        (lambda m: m.update(activation="gelu"), "activation='gelu'"),
        (lambda m: m.update(use_pbc=False), "use_pbc=False"),
        (lambda m: m.update(new_flag=1), "unknown gemnet_oc setting 'new_flag'"),
        (lambda m: m.update(name="gemnet_oc_backbone"), "hydra"),
    ],
)
def test_importer_refuses_what_it_cannot_express(edit, message):
    ckpt = copy.deepcopy(read_fairchem_file(DATA / "gemnet_direct_training.pt"))
    edit(ckpt["config"]["model"])
    with pytest.raises(FairchemFileError, match=message) as exc:
        convert_fairchem(ckpt, "gemnet.pt")
    assert str(exc.value).startswith("gemnet.pt: ") and "\n" not in str(exc.value)


def test_importer_refuses_unequal_normalisers_and_bad_ema():
    ckpt = read_fairchem_file(DATA / "gemnet_grad_training.pt")
    edited = copy.deepcopy(ckpt)
    edited["normalizers"]["forces"]["rmsd"] = torch.tensor(2.0)
    with pytest.raises(FairchemFileError, match="different energy and force normaliser"):
        convert_fairchem(edited, "g.pt")
    edited = copy.deepcopy(ckpt)
    edited["ema"]["shadow_params"].pop()
    with pytest.raises(FairchemFileError, match="shadow_params"):
        convert_fairchem(edited, "g.pt", weights="ema")
    with pytest.raises(FairchemFileError, match="saved for inference"):
        import_fairchem(DATA / "gemnet_grad_inference.pt", weights="ema")


def test_quadruplets_off_for_untagged_atoms_when_qint_tags_lack_zero():
    """fairchem's ``qint_tags: [1, 2]`` gives untagged (tag 0) atoms no quadruplets."""
    ckpt = copy.deepcopy(read_fairchem_file(DATA / "gemnet_grad_inference.pt"))
    atoms, _ = _reference("gemnet_grad")
    full = _predict(
        ScalingCalculator(
            potential_from_dict(convert_fairchem(copy.deepcopy(ckpt))),
            device="cpu",
            dtype="float64",
        ),
        atoms,
    )[0]
    ckpt["config"]["model"]["qint_tags"] = [1, 2]
    converted = convert_fairchem(ckpt)
    assert converted["model"]["config"]["quad_on_untagged"] is False
    without = _predict(
        ScalingCalculator(potential_from_dict(converted), device="cpu", dtype="float64"), atoms
    )[0]
    assert np.abs(full - without).max() > 1e-4
