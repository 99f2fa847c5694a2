"""The direct-force EquiformerV2 ladder (``eqv2d-<size>``): presets, the physics a
non-conservative model must still have (rotation equivariance of forces and stress,
translation and permutation invariance, supercell consistency, continuity at the cutoff),
the one it lacks (a curl-free force field), and the package paths (mlip-train, calculator,
export)."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation
from test_training_helpers import emt_structures

from mlip_scaling import keys
from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.checkpoint import load_potential
from mlip_scaling.data.atomic_data import from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.models import registry
from mlip_scaling.models.equiformer_v2.presets import EQV2D_NAMES
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.presets import PRESETS
from mlip_scaling.scaling.cli import main as scaling_main
from mlip_scaling.training.cli import main as train_main

#: a tiny ladder-shaped config (fine S² grid: equivariance to round-off)
TINY = {"cutoff": 4.0, "num_layers": 2, "sphere_channels": 8, "attn_hidden_channels": 8,
        "num_heads": 2, "attn_alpha_channels": 4, "attn_value_channels": 4,
        "ffn_hidden_channels": 8, "lmax": 2, "mmax": 1, "grid_resolution": 24,
        "num_distance_basis": 8, "edge_channels": 8, "parity_average": False}


def _potential(direct: bool = True) -> Potential:
    config = {**TINY, "direct_forces": direct}
    torch.manual_seed(0)
    family = "eqv2d" if direct else "eqv2"
    model = registry.build_model(family, config)
    return Potential(model, family, config, species=[13, 28, 29]).double().eval()


@pytest.fixture(scope="module")
def direct() -> Potential:
    return _potential()


def _predict(pot: Potential, atoms: Atoms) -> dict[str, np.ndarray]:
    data = NeighborListTransform(pot.cutoff)(from_atoms(atoms, labels=False))
    return {k: v.detach().numpy() for k, v in pot(data).items()}


def _crystal() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.cell[1] += [0.3, 0.0, 0.2]
    atoms.numbers[[1, 3]] = [28, 13]
    atoms.rattle(0.1, seed=3)
    return atoms


def test_every_eqv2d_preset_is_an_eqv2_backbone_with_direct_heads():
    names = registry.list_presets("eqv2d")
    assert len(names) == 12 and registry.resolve_model("eqv2d")[0] == "eqv2d-9.2k"
    backbones = {direct: base for base, direct in EQV2D_NAMES.items()}
    for name in names:
        family, config = PRESETS[name]
        base = PRESETS[backbones[name]][1]
        assert family == "eqv2d" and config["direct_forces"] and not base["direct_forces"]
        assert {k: v for k, v in config.items() if k not in ("direct_forces", "stress_head")} \
            == {k: v for k, v in base.items() if k != "direct_forces"}
    shapes = registry.meta_shapes("eqv2d", PRESETS["eqv2d-9.2k"][1])
    base = registry.meta_shapes("eqv2", PRESETS["eqv2-5.6k"][1])
    assert {k: shapes[k] for k in base} == base  # the same backbone and energy head
    assert {k.split(".")[0] for k in set(shapes) - set(base)} == {"force_head", "stress_head"}


@pytest.mark.parametrize("seed", [1, 2])
def test_forces_and_stress_rotate_with_the_structure(direct, seed):
    atoms = _crystal()
    ref = _predict(direct, atoms)
    q = Rotation.random(random_state=seed).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ q.T
    moved.cell = np.asarray(atoms.cell) @ q.T
    out = _predict(direct, moved)
    scale = np.abs(ref[keys.FORCES]).max()
    assert scale > 1e-4
    np.testing.assert_allclose(out[keys.ENERGY], ref[keys.ENERGY], rtol=1e-9)
    np.testing.assert_allclose(out[keys.FORCES], ref[keys.FORCES] @ q.T, atol=1e-9 * scale)
    stress = q @ ref[keys.STRESS][0] @ q.T
    np.testing.assert_allclose(out[keys.STRESS][0], stress, atol=1e-9 * np.abs(stress).max())
    np.testing.assert_allclose(ref[keys.STRESS][0], ref[keys.STRESS][0].T, atol=1e-12)


def test_translation_and_permutation_invariance(direct):
    atoms = _crystal()
    ref = _predict(direct, atoms)
    shifted = atoms.copy()
    shifted.positions += [1.3, -2.1, 0.7]
    out = _predict(direct, shifted)
    for key in (keys.ENERGY, keys.FORCES, keys.STRESS):
        np.testing.assert_allclose(out[key], ref[key], atol=1e-10)
    order = np.random.default_rng(5).permutation(len(atoms))
    out = _predict(direct, atoms[order])
    np.testing.assert_allclose(out[keys.ENERGY], ref[keys.ENERGY], rtol=1e-10)
    np.testing.assert_allclose(out[keys.FORCES], ref[keys.FORCES][order], atol=1e-10)
    np.testing.assert_allclose(out[keys.STRESS], ref[keys.STRESS], atol=1e-10)


def test_supercell_consistency(direct):
    atoms = bulk("CuNi", "cesiumchloride", a=2.8)  # cell edges well below the cutoff
    atoms.rattle(0.08, seed=5)
    small, big = _predict(direct, atoms), _predict(direct, atoms * (2, 2, 2))
    np.testing.assert_allclose(big[keys.ENERGY], 8 * small[keys.ENERGY], rtol=1e-10)
    np.testing.assert_allclose(big[keys.FORCES], np.tile(small[keys.FORCES], (8, 1)),
                               atol=1e-10)
    np.testing.assert_allclose(big[keys.STRESS], small[keys.STRESS], atol=1e-10)
    assert np.abs(small[keys.FORCES]).max() > 1e-4


def test_forces_continuous_across_the_cutoff(direct):
    """C sees only A, at the cutoff's edge: its predicted force and A's vanish smoothly."""
    def trimer(distance: float) -> Atoms:
        pos = [[0.0, 0.0, 0.0], [2.3, 0.0, 0.0], [-distance, 0.0, 0.0]]
        return Atoms(numbers=[29, 28, 13], positions=pos)

    rc = direct.cutoff
    far = _predict(direct, trimer(rc + 0.5))[keys.FORCES]
    gaps = [np.abs(_predict(direct, trimer(rc - d))[keys.FORCES][:2] - far[:2]).max()
            for d in (1e-2, 1e-3)]
    outside = _predict(direct, trimer(rc + 1e-3))[keys.FORCES]
    np.testing.assert_allclose(outside[:2], far[:2], atol=1e-12)
    assert gaps[0] > 0 and gaps[1] < 0.05 * gaps[0]


def _force_jacobian(pot: Potential, atoms: Atoms) -> np.ndarray:
    """[3N, 3N] ∂F_i/∂r_j of the predicted forces."""
    data = NeighborListTransform(pot.cutoff)(from_atoms(atoms, labels=False))
    pos = data[keys.POSITIONS].clone().requires_grad_(True)
    data[keys.POSITIONS] = pos
    forces = pot(data, compute_stress=False, create_graph=True)[keys.FORCES].reshape(-1)
    rows = [torch.autograd.grad(f, pos, retain_graph=True)[0].reshape(-1) for f in forces]
    return torch.stack(rows).detach().numpy()


def test_direct_forces_are_not_a_gradient_field():
    """A conservative force field has a symmetric Jacobian (−Hessian); direct heads do not:
    the reason a direct model's NVE energy drifts (benchmarks/EQV2_DIRECT.md)."""
    atoms = Atoms(numbers=[29, 28, 13, 29], positions=[[0, 0, 0], [2.2, 0.3, 0], [0.4, 2.1, 0.5],
                                                        [1.5, 1.2, 1.9]])
    for pot, conservative in ((_potential(direct=True), False), (_potential(direct=False), True)):
        jac = _force_jacobian(pot, atoms)
        asym = np.linalg.norm(jac - jac.T) / np.linalg.norm(jac)
        assert (asym < 1e-8) if conservative else (asym > 1e-3), asym


def test_train_calculate_and_export(tmp_path):
    data = tmp_path / "emt.extxyz"
    ase.io.write(data, emt_structures(12, seed=21))
    out = tmp_path / "run"
    argv = ["--model", "eqv2d-2.3k", "--data", str(data), "--batch-size", "4", "--val-size", "4",
            "--test-size", "2", "--epochs", "2", "--device", "cpu", "--out", str(out),
            "--export", "m.pt"]
    assert train_main(argv) == 0
    potential = load_potential(out / "m.pt", dtype=torch.float64)
    assert potential.family == "eqv2d" and potential.direct_forces
    atoms = emt_structures(1, seed=22)[0]
    want = _predict(potential, atoms)
    atoms.calc = ScalingCalculator(out / "m.pt", device="cpu", dtype="float64")
    np.testing.assert_allclose(atoms.get_forces(), want[keys.FORCES], atol=1e-10)
    np.testing.assert_allclose(atoms.get_potential_energy(), want[keys.ENERGY][0], rtol=1e-10)
    program = tmp_path / "m.pt2"
    assert scaling_main(["export", str(out / "m.pt"), "--out", str(program), "--dtype",
                         "float64", "-q"]) == 0
    extra = {"metadata.json": ""}
    module = torch.export.load(program, extra_files=extra).module()
    meta = json.loads(extra["metadata.json"])
    assert meta["direct_forces"] and meta["outputs"][2:] == ["forces", "stress"]
    for structure in (atoms, atoms.repeat((2, 1, 1))):
        data = NeighborListTransform(potential.cutoff)(from_atoms(structure, labels=False))
        energy, _, forces, stress = module(
            data[keys.POSITIONS], data[keys.CELL][0], data[keys.ATOMIC_NUMBERS],
            data[keys.EDGE_INDEX], data[keys.EDGE_CELL_SHIFT], torch.zeros_like(data[keys.CELL][0]))
        want = _predict(potential, structure)
        np.testing.assert_allclose(energy.detach().numpy(), want[keys.ENERGY][0], rtol=1e-8)
        np.testing.assert_allclose(forces.detach().numpy(), want[keys.FORCES], atol=1e-8)
        np.testing.assert_allclose(stress.detach().numpy(), want[keys.STRESS][0], atol=1e-8)
