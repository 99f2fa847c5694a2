"""The torch-sim model interface (optional extra; skipped when torch-sim is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ts = pytest.importorskip("torch_sim")

from ase.build import bulk  # noqa: E402
from test_calculator import CUTOFF, lj_potential, methane, rattled_cu, smooth_potential  # noqa: E402

from mlip_scaling.calculators.ase import ScalingCalculator  # noqa: E402
from mlip_scaling.calculators.torchsim import ScalingTorchSimModel  # noqa: E402
from mlip_scaling.errors import DataError  # noqa: E402

VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


@pytest.fixture
def model() -> ScalingTorchSimModel:
    return ScalingTorchSimModel(smooth_potential(), device="cpu", dtype="float64")


def test_batched_forward_matches_the_ase_calculator(model):
    structures = [rattled_cu(seed=1), rattled_cu(repeat=(1, 2, 2), seed=2, strain=0.04)]
    state = ts.io.atoms_to_state(structures, model.device, model.dtype)
    out = model(state)
    assert out["energy"].shape == (2,) and out["stress"].shape == (2, 3, 3)
    assert out["forces"].shape == (sum(len(a) for a in structures), 3)
    expected = ScalingCalculator(smooth_potential(), dtype="float64").predict(structures)
    start = 0
    for k, (atoms, ref) in enumerate(zip(structures, expected)):
        assert float(out["energy"][k]) == pytest.approx(float(ref["energy"]), abs=1e-10)
        forces = out["forces"][start : start + len(atoms)].numpy()
        np.testing.assert_allclose(forces, ref["forces"], atol=1e-10)
        np.testing.assert_allclose(out["stress"][k].numpy()[VOIGT], ref["stress"], atol=1e-12)
        start += len(atoms)


def test_stress_convention_matches_torch_sim_lennard_jones(lj_model):
    atoms = rattled_cu(strain=0.03)
    ours = ScalingTorchSimModel(lj_potential(lj_model), device="cpu", dtype="float64")
    lennard_jones = pytest.importorskip("torch_sim.models.lennard_jones")
    theirs = lennard_jones.LennardJonesModel(
        sigma=2.3, epsilon=0.1, cutoff=CUTOFF, dtype=torch.float64, compute_stress=True
    )
    state = ts.io.atoms_to_state([atoms], torch.device("cpu"), torch.float64)
    a, b = ours(state), theirs(state)
    # torch-sim 0.3's LJ counts each pair of a full neighbour list twice; whatever the
    # overall factor, forces and stress must share it (same sign convention)
    factor = float(b["forces"][0, 0] / a["forces"][0, 0])
    assert factor > 0
    torch.testing.assert_close(b["forces"], factor * a["forces"], atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(b["stress"].reshape(3, 3), factor * a["stress"].reshape(3, 3),
                               atol=1e-10, rtol=1e-8)


def test_cell_relaxation_removes_stress(model):
    atoms = rattled_cu(strain=0.03)
    before = model(ts.io.atoms_to_state([atoms], model.device, model.dtype))["stress"]
    converged = ts.runners.generate_force_convergence_fn(force_tol=1e-3)
    relaxed = ts.optimize(system=[atoms], model=model, optimizer=ts.optimizers.frechet_cell_fire,
                          convergence_fn=converged, max_steps=1000)
    after = model(relaxed)["stress"]
    assert after.abs().max() < 0.05 * before.abs().max()


def test_dict_state_and_molecule(model):
    mol = methane()
    state = ts.io.atoms_to_state([mol], model.device, model.dtype)
    as_dict = {"positions": state.positions, "cell": state.cell, "pbc": False,
               "atomic_numbers": state.atomic_numbers, "system_idx": state.system_idx}
    out = model(as_dict)
    mol.calc = ScalingCalculator(smooth_potential(), dtype="float64")
    np.testing.assert_allclose(out["forces"].numpy(), mol.get_forces(), atol=1e-10)
    assert out["stress"].abs().max() < 1e-12


def test_integrate_and_optimize_run(model):
    systems = [rattled_cu(seed=3, strain=0.0), rattled_cu(seed=4, strain=0.0)]
    final = ts.integrate(system=systems, model=model, integrator=ts.nvt_langevin,
                         n_steps=30, temperature=300.0, timestep=0.002)
    assert final.n_systems == 2 and torch.isfinite(final.positions).all()
    start = model(ts.io.atoms_to_state(systems, model.device, model.dtype))["energy"]
    relaxed = ts.optimize(system=systems, model=model, optimizer=ts.optimizers.fire,
                          max_steps=50)
    assert torch.all(model(relaxed)["energy"] < start)


def test_unknown_element_is_named(model):
    state = ts.io.atoms_to_state([rattled_cu(), bulk("Fe", "bcc", 2.87)], model.device,
                                 model.dtype)
    with pytest.raises(DataError, match=r"system 1 \(Fe\): element Fe"):
        model(state)


def test_overlapping_atoms_are_named(model):
    from ase import Atoms

    bad = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]], cell=[9, 9, 9], pbc=True)
    state = ts.io.atoms_to_state([rattled_cu(), bad], model.device, model.dtype)
    with pytest.raises(DataError, match=r"^system 1 \(Cu2\): atoms 0 and 1 are 0 Å apart"):
        model(state)
