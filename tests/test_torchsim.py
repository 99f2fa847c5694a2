"""The torch-sim model interface (optional extra; skipped when torch-sim is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ts = pytest.importorskip("torch_sim")

from ase.build import bulk  # noqa: E402
from ase.stress import full_3x3_to_voigt_6_stress  # noqa: E402
from test_calculator import CUTOFF, lj_potential, methane, rattled_cu, smooth_potential  # noqa: E402

from mlip_scaling.calculators.ase import ScalingCalculator  # noqa: E402
from mlip_scaling.calculators.inference import sorted_neighbors  # noqa: E402
from mlip_scaling.calculators.torchsim import ScalingTorchSimModel  # noqa: E402
from mlip_scaling.errors import DataError  # noqa: E402


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
        stress = full_3x3_to_voigt_6_stress(out["stress"][k].numpy())
        np.testing.assert_allclose(stress, ref["stress"], atol=1e-12)
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


def slab(size: tuple[int, int, int], seed: int):
    from ase.build import fcc111

    atoms = fcc111("Cu", size=size, vacuum=6.0, a=3.65)
    atoms.rattle(0.03, seed=seed)
    return atoms


def wire(repeat: int, seed: int):
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True) * (repeat, 1, 1)
    atoms.pbc = (True, False, False)
    atoms.rattle(0.03, seed=seed)
    return atoms


def ethane():
    from ase.build import molecule

    atoms = molecule("C2H6")
    atoms.positions *= 1.5
    atoms.rattle(0.02, seed=9)
    return atoms


BATCHES = {  # systems of different sizes sharing one pbc, as torch-sim batches them
    "periodic": lambda: [rattled_cu(seed=1), rattled_cu(repeat=(1, 2, 2), seed=2, strain=0.04)],
    "slabs": lambda: [slab((2, 2, 3), seed=5), slab((3, 2, 2), seed=6)],
    "wires": lambda: [wire(2, seed=7), wire(3, seed=8)],
    "molecules": lambda: [methane(), ethane()],
}


def state_of(systems: list, model: ScalingTorchSimModel):
    """A torch-sim state of ``systems`` keeping their (shared, possibly mixed) pbc."""
    state = ts.io.atoms_to_state(systems, model.device, model.dtype)
    state.pbc = torch.tensor(systems[0].pbc)
    return state


@pytest.mark.parametrize("kind", sorted(BATCHES))
def test_device_lists_equal_the_host_lists(model, kind):
    systems = BATCHES[kind]()
    batch = model._batch(state_of(systems, model))
    edges, shifts, start = [], [], 0
    for atoms in systems:
        edge_index, shift = sorted_neighbors(atoms.positions, atoms.cell.array, atoms.pbc,
                                             CUTOFF)
        edges.append(edge_index + start)
        shifts.append(shift)
        start += len(atoms)
    assert batch["edge_index"].shape[1] > 0
    # integer pairs and integer image shifts: the same list exactly, not a float comparison
    assert np.array_equal(batch["edge_index"].numpy(), np.concatenate(edges, axis=1))
    assert np.array_equal(batch["edge_cell_shift"].numpy().astype(np.int64),
                          np.concatenate(shifts).astype(np.int64))


@pytest.mark.parametrize("kind", sorted(BATCHES))
def test_device_lists_give_the_host_results(model, kind):
    systems = BATCHES[kind]()
    out = model(state_of(systems, model))
    expected = ScalingCalculator(smooth_potential(), dtype="float64").predict(systems)
    start = 0
    for k, (atoms, ref) in enumerate(zip(systems, expected)):
        np.testing.assert_allclose(float(out["energy"][k]), ref["energy"], rtol=1e-12,
                                   atol=1e-10)
        forces = out["forces"][start : start + len(atoms)].numpy()
        np.testing.assert_allclose(forces, ref["forces"], rtol=0, atol=1e-10)
        if atoms.pbc.all():
            stress = full_3x3_to_voigt_6_stress(out["stress"][k].numpy())
            np.testing.assert_allclose(stress, ref["stress"], rtol=0, atol=1e-10)
        else:
            assert out["stress"][k].abs().max() == 0
        start += len(atoms)


def test_positions_are_not_copied_to_the_host(model, monkeypatch):
    atoms = rattled_cu(repeat=(4, 4, 4), seed=7, strain=0.0)  # 256 atoms
    state = ts.io.atoms_to_state([atoms], model.device, model.dtype)
    sizes = []
    for method in ("cpu", "numpy", "tolist"):
        original = getattr(torch.Tensor, method)

        def spy(self, *args, _original=original, **kwargs):
            sizes.append(self.numel())
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, spy)
    model(state)
    assert sizes and max(sizes) < len(atoms)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("nan", r"^system 1 \(Cu8\): position of atom 3 is not finite"),
        ("thin", r"^system 1 \(Cu8\): the periodic cell is 0.2 Å thick along cell vector 2"),
        ("span", r"^system 1 \(Cu8\): the atoms span 1.2e\+03 Å along a non-periodic"),
    ],
)
def test_geometry_checks_run_on_the_device_path(model, change, message):
    bad = bulk("Cu", "fcc", a=3.65, cubic=True) * (2, 1, 1)
    if change == "nan":
        bad.positions[3, 1] = np.nan
    elif change == "thin":
        bad.set_cell(np.diag([7.3, 3.65, 0.2]))
    else:
        bad.pbc = (True, True, False)
        bad.positions[5, 2] = 1200.0
    good = rattled_cu()
    good.pbc = bad.pbc
    state = state_of([good, bad], model)
    with pytest.raises(DataError, match=message):
        model(state)


@pytest.mark.parametrize(("python", "pinned"), [("3.11", "==0.3.0"), ("3.12", "==0.6.2"),
                                                ("3.13", "==0.6.2")])
def test_torchsim_extra_is_pinned_per_python_version(python, pinned):
    from pathlib import Path

    import tomllib
    from packaging.requirements import Requirement

    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    extra = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["torchsim"]
    requirements = [Requirement(line) for line in extra]
    chosen = {r.name: str(r.specifier) for r in requirements
              if r.marker is None or r.marker.evaluate({"python_version": python})}
    assert chosen == {"torch-sim-atomistic": pinned, "vesin-torch": ">=0.3.7"}


def test_installed_torch_sim_is_the_pinned_one():
    import sys
    from importlib.metadata import version

    expected = "0.3.0" if sys.version_info[:2] == (3, 11) else "0.6.2"
    assert version("torch-sim-atomistic") == expected
