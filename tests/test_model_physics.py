"""Physics of the conservative energy models behind Potential (float64).

Symmetries (rotations, reflections, translations, permutations), finite-difference forces
and stress, supercell consistency and continuity at the cutoff, for every family listed in
``FAMILIES_UNDER_TEST``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model

#: (family, tiny config) of every conservative model family under test.
FAMILIES_UNDER_TEST: list[tuple[str, dict]] = [
    (
        "transformer",
        {"cutoff": 4.0, "num_layers": 2, "hidden_channels": 16, "num_heads": 2,
         "ffn_hidden": 32, "num_radial": 6},
    ),
    (
        "transformer",
        {"cutoff": 4.0, "num_layers": 2, "hidden_channels": 16, "num_heads": 2,
         "ffn_hidden": 32, "num_radial": 6, "moment_channels": 4, "species_radial": True},
    ),
    (
        "transformer-vec",
        {"cutoff": 4.0, "num_layers": 2, "hidden_channels": 16, "num_heads": 2,
         "ffn_hidden": 32, "num_radial": 6, "direction_features": True},
    ),
    (
        "eqv2",
        {"cutoff": 4.0, "num_layers": 2, "sphere_channels": 8, "attn_hidden_channels": 8,
         "num_heads": 2, "attn_alpha_channels": 4, "attn_value_channels": 4,
         "ffn_hidden_channels": 8, "lmax": 2, "mmax": 1, "grid_resolution": 24,
         "num_distance_basis": 8, "edge_channels": 8},
    ),
    (
        "bpnn",
        {"cutoff": 4.0, "elements": "13,28,29", "hidden_channels": 8, "num_layers": 2,
         "num_radial": 6, "num_angular_radial": 2, "num_zeta": 3, "chemical_channels": 2},
    ),
    (
        "gemnet",
        {"cutoff": 4.0, "num_blocks": 2, "emb_size_atom": 8, "emb_size_edge": 8,
         "emb_size_trip_in": 4, "emb_size_trip_out": 4, "emb_size_rbf": 4, "emb_size_cbf": 4,
         "num_radial": 6, "num_spherical": 3},
    ),
    (
        "gemnet",
        {"cutoff": 4.0, "num_blocks": 1, "emb_size_atom": 8, "emb_size_edge": 8,
         "emb_size_trip_in": 4, "emb_size_trip_out": 4, "emb_size_rbf": 4, "emb_size_cbf": 4,
         "num_radial": 6, "num_spherical": 3, "cutoff_main": 3.6, "cutoff_qint": 3.0,
         "cutoff_aeaint": 3.8, "sbf": "spherical_harmonics", "num_atom_emb_layers": 1},
    ),
]
#: families that build in no rotation symmetry (their energies must change under rotations)
NOT_ROTATION_INVARIANT = {"transformer-vec"}
_IDS = [family + ("-options" if {"moment_channels", "cutoff_qint"} & set(config) else "")
        for family, config in FAMILIES_UNDER_TEST]


@pytest.fixture(params=FAMILIES_UNDER_TEST, ids=_IDS, scope="module")
def potential(request) -> Potential:
    family, config = request.param
    torch.manual_seed(0)
    model = build_model(family, config)
    for name, param in model.named_parameters():
        if name.startswith("species_radial"):  # zero at initialisation: make it matter
            torch.nn.init.normal_(param, std=0.3)
    return Potential(model, family, config, species=[13, 28, 29]).double().eval()


def _predict(pot: Potential, atoms: Atoms) -> dict[str, np.ndarray]:
    data = NeighborListTransform(pot.cutoff)(from_atoms(atoms, labels=False))
    out = pot(data)
    return {k: v.detach().numpy() for k, v in out.items()}


def _crystal() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.cell[1] += [0.3, 0.0, 0.2]  # triclinic
    atoms.numbers[[1, 3]] = [28, 13]
    atoms.rattle(0.1, seed=3)
    return atoms


def _cluster() -> Atoms:
    rng = np.random.default_rng(4)
    pos = rng.normal(scale=1.2, size=(6, 3))
    return Atoms(numbers=[29, 28, 13, 29, 29, 28], positions=pos)


def _transform(atoms: Atoms, kind: str, seed: int) -> tuple[Atoms, np.ndarray, np.ndarray]:
    """Transformed copy, the 3x3 linear map applied, and the atom order (new -> old)."""
    rng = np.random.default_rng(seed)
    out, order, matrix = atoms.copy(), np.arange(len(atoms)), np.eye(3)
    if kind in ("rotation", "reflection"):
        matrix = Rotation.random(random_state=seed).as_matrix()
        if kind == "reflection":
            matrix = matrix @ np.diag([1.0, 1.0, -1.0])
        out.positions = atoms.positions @ matrix.T
        out.cell = np.asarray(atoms.cell) @ matrix.T
    elif kind == "translation":
        out.positions = atoms.positions + rng.normal(scale=3.0, size=3)
    elif kind == "permutation":
        order = rng.permutation(len(atoms))
        out = atoms[order]
    return out, matrix, order


@pytest.mark.parametrize("kind", ["rotation", "reflection", "translation", "permutation"])
@pytest.mark.parametrize("make", [_crystal, _cluster], ids=["crystal", "cluster"])
def test_symmetries(potential, kind, make):
    atoms = make()
    ref = _predict(potential, atoms)
    for seed in (1, 2):
        moved, matrix, order = _transform(atoms, kind, seed)
        out = _predict(potential, moved)
        if kind in ("rotation", "reflection") and potential.family in NOT_ROTATION_INVARIANT:
            assert abs(out[keys.ENERGY][0] - ref[keys.ENERGY][0]) > 1e-6  # it sees the frame
            continue
        np.testing.assert_allclose(out[keys.ENERGY], ref[keys.ENERGY], rtol=1e-10, atol=1e-10)
        expected = ref[keys.FORCES][order] @ matrix.T
        np.testing.assert_allclose(out[keys.FORCES], expected, atol=1e-10)
        stress = matrix @ ref[keys.STRESS][0] @ matrix.T
        np.testing.assert_allclose(out[keys.STRESS][0], stress, atol=1e-10)
    assert np.abs(ref[keys.FORCES]).max() > 1e-4  # the test is not vacuous


def _energy(pot: Potential, atoms: Atoms) -> float:
    return float(_predict(pot, atoms)[keys.ENERGY][0])


def test_forces_match_finite_differences(potential):
    atoms, h = _crystal(), 1e-4
    forces = _predict(potential, atoms)[keys.FORCES]
    numeric = np.zeros_like(forces)
    for a in range(len(atoms)):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, c] += h
            minus.positions[a, c] -= h
            numeric[a, c] = -(_energy(potential, plus) - _energy(potential, minus)) / (2 * h)
    err = np.linalg.norm(numeric - forces) / np.linalg.norm(forces)
    assert err < 1e-5, err


def test_stress_matches_finite_differences(potential):
    atoms, h = _crystal(), 1e-5
    stress = _predict(potential, atoms)[keys.STRESS][0]
    numeric = np.zeros((3, 3))
    cell = np.asarray(atoms.cell)
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1.0, -1.0):
                strain = np.eye(3)
                strain[a, b] += sign * h / 2
                strain[b, a] += sign * h / 2
                moved = atoms.copy()
                moved.set_cell(cell @ strain, scale_atoms=True)
                energies.append(_energy(potential, moved))
            numeric[a, b] = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
    err = np.linalg.norm(numeric - stress) / np.linalg.norm(stress)
    assert err < 1e-5, err


def test_supercell_consistency(potential):
    atoms = bulk("CuNi", "cesiumchloride", a=2.8)  # cell edges well below the cutoff
    atoms.rattle(0.08, seed=5)
    assert atoms.cell.lengths().max() < potential.cutoff
    small = _predict(potential, atoms)
    big = _predict(potential, atoms * (2, 2, 2))
    np.testing.assert_allclose(big[keys.ENERGY], 8 * small[keys.ENERGY], rtol=1e-10)
    np.testing.assert_allclose(big[keys.FORCES], np.tile(small[keys.FORCES], (8, 1)),
                               atol=1e-10)
    np.testing.assert_allclose(big[keys.STRESS], small[keys.STRESS], atol=1e-10)


def _trimer(distance: float) -> Atoms:
    """A-B pair at 2.3 Å; C on the far side of A at ``distance`` (only A can see C)."""
    pos = [[0.0, 0.0, 0.0], [2.3, 0.0, 0.0], [-distance, 0.0, 0.0]]
    return Atoms(numbers=[29, 28, 13], positions=pos)


def test_energy_continuous_across_cutoff(potential):
    rc = potential.cutoff
    far = _predict(potential, _trimer(rc + 0.5))
    gaps = []
    for delta in (1e-2, 1e-3, 1e-4):
        inside = _predict(potential, _trimer(rc - delta))
        outside = _predict(potential, _trimer(rc + delta))
        np.testing.assert_allclose(outside[keys.ENERGY], far[keys.ENERGY], atol=1e-12)
        gaps.append(abs(float(inside[keys.ENERGY][0] - far[keys.ENERGY][0])))
        # forces on C vanish as it reaches the cutoff
        assert np.abs(inside[keys.FORCES][2]).max() < 1e3 * delta**2
    assert gaps[0] > 0.0  # C does interact inside the cutoff
    # the gap falls faster than linearly (continuous slope), and is tiny next to rc
    assert gaps[1] < 0.05 * gaps[0] and gaps[2] < 0.05 * gaps[1]
    assert gaps[2] < 1e-8
