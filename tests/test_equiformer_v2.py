"""EquiformerV2: Wigner-D algebra, edge frames, equivariance, gradients, presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from e3nn import o3

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import collate, compute_edge_vectors, from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.models.equiformer_v2.edge_frame import SINGULAR_DIRECTION, edge_rotation
from mlip_scaling.models.equiformer_v2.presets import EQV2_PRESET_PARAMS, EQV2_PRESETS
from mlip_scaling.models.equiformer_v2.so3 import wigner_d_blocks
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model, count_parameters

CUTOFF = 4.0
TINY = {
    "cutoff": CUTOFF,
    "num_layers": 2,
    "sphere_channels": 8,
    "attn_hidden_channels": 8,
    "num_heads": 2,
    "attn_alpha_channels": 4,
    "attn_value_channels": 4,
    "ffn_hidden_channels": 8,
    "lmax": 2,
    "mmax": 1,
    "grid_resolution": 16,
    "num_distance_basis": 8,
    "edge_channels": 8,
}
F64 = torch.float64


def _potential(dtype=F64, **overrides) -> Potential:
    torch.manual_seed(0)
    cfg = {**TINY, **overrides}
    model = build_model("eqv2", cfg)
    return Potential(model, "eqv2", cfg, species=[13, 28, 29]).to(dtype)


def _data(atoms: Atoms, cutoff: float = CUTOFF, dtype=F64) -> dict:
    return NeighborListTransform(cutoff)(from_atoms(atoms, dtype=dtype))


def _alloy(seed: int = 0) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.numbers[[1, 2]] = [28, 13]
    atoms.rattle(0.15, seed=seed)
    return atoms


def _transformed(atoms: Atoms, q: np.ndarray, shift=(0.0, 0.0, 0.0)) -> Atoms:
    out = atoms.copy()
    out.positions = atoms.positions @ q.T + np.asarray(shift)
    out.cell = atoms.cell.array @ q.T
    return out


def _random_rotation(seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    return o3.rand_matrix(dtype=F64).numpy()


def test_wigner_blocks_are_representation_matching_spherical_harmonics():
    torch.manual_seed(1)
    r1, r2 = o3.rand_matrix(4, dtype=F64), o3.rand_matrix(4, dtype=F64)
    d1, d2, d12 = (wigner_d_blocks(r, 4) for r in (r1, r2, r1 @ r2))
    vec = torch.randn(4, 3, dtype=F64)
    for l in range(5):
        torch.testing.assert_close(d12[l], d1[l] @ d2[l], atol=1e-12, rtol=0)
        eye = torch.eye(2 * l + 1, dtype=F64).expand_as(d1[l])
        torch.testing.assert_close(d1[l] @ d1[l].transpose(1, 2), eye, atol=1e-12, rtol=0)
        y_rot = o3.spherical_harmonics(l, torch.einsum("eij,ej->ei", r1, vec), True)
        y = o3.spherical_harmonics(l, vec, True)
        torch.testing.assert_close(y_rot, torch.einsum("eij,ej->ei", d1[l], y), atol=1e-12, rtol=0)


def test_edge_frame_aligns_every_direction_with_y():
    torch.manual_seed(2)
    axes = torch.cat([torch.eye(3, dtype=F64), -torch.eye(3, dtype=F64)])
    special = torch.tensor([SINGULAR_DIRECTION], dtype=F64)
    vec = torch.cat([torch.randn(200, 3, dtype=F64), axes, special, -special, 2.5 * axes])
    rot = edge_rotation(vec)
    assert torch.isfinite(rot).all()
    unit = vec / vec.norm(dim=1, keepdim=True)
    y = torch.tensor([0.0, 1.0, 0.0], dtype=F64).expand_as(unit)
    torch.testing.assert_close(torch.einsum("eij,ej->ei", rot, unit), y, atol=1e-12, rtol=0)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=F64).expand_as(rot))
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(len(rot), dtype=F64))


def test_node_embeddings_rotate_with_wigner_d():
    """Equivariant up to the S² grid quadrature of the pointwise activations (~1e-7 relative)."""
    model = _potential(parity_average=False).model
    atoms = _alloy()
    q = _random_rotation(3)
    data = compute_edge_vectors(_data(atoms))
    data_rot = compute_edge_vectors(_data(_transformed(atoms, q)))
    x, _ = model.backbone(data)
    x_rot, _ = model.backbone(data_rot)
    blocks = wigner_d_blocks(torch.tensor(q)[None], TINY["lmax"])
    for l, d in enumerate(blocks):
        sl = slice(l * l, (l + 1) ** 2)
        expected = torch.einsum("ij,njc->nic", d[0], x[:, sl])
        scale = float(x[:, sl].detach().abs().max())
        assert scale > 1e-3  # features of every degree are non-trivial
        torch.testing.assert_close(x_rot[:, sl], expected, atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize(
    "q",
    [_random_rotation(4), np.diag([-1.0, 1.0, 1.0]), -np.eye(3), -_random_rotation(5)],
    ids=["rotation", "mirror", "inversion", "rotoinversion"],
)
def test_energy_invariant_forces_equivariant(q):
    pot = _potential()
    atoms = _alloy()
    ref = pot(_data(atoms))
    out = pot(_data(_transformed(atoms, q, shift=(0.3, -1.2, 2.0))))
    torch.testing.assert_close(out[keys.ENERGY], ref[keys.ENERGY], atol=1e-10, rtol=1e-8)
    qt = torch.tensor(q)
    torch.testing.assert_close(out[keys.FORCES], ref[keys.FORCES] @ qt.T, atol=1e-9, rtol=1e-6)
    stress = qt @ ref[keys.STRESS][0] @ qt.T
    torch.testing.assert_close(out[keys.STRESS][0], stress, atol=1e-9, rtol=1e-6)


def test_permutation_invariance():
    pot = _potential()
    atoms = _alloy(seed=6)
    perm = np.random.default_rng(0).permutation(len(atoms))
    ref = pot(_data(atoms))
    out = pot(_data(atoms[perm]))
    torch.testing.assert_close(out[keys.ENERGY], ref[keys.ENERGY], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out[keys.FORCES], ref[keys.FORCES][perm], atol=1e-10, rtol=1e-8)


def test_finite_difference_forces_and_stress():
    pot = _potential()
    atoms = _alloy(seed=7)
    out = pot(_data(atoms))

    def energy(a: Atoms) -> float:
        return float(pot(_data(a), compute_forces=False, compute_stress=False)[keys.ENERGY])

    h = 1e-5
    fd_forces = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            fd_forces[i, k] = -(energy(plus) - energy(minus)) / (2 * h)
    forces = out[keys.FORCES].numpy()
    assert np.abs(forces - fd_forces).max() < 1e-5 * np.abs(forces).max()
    fd_stress = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            strain = np.zeros((3, 3))
            strain[a, b] = strain[b, a] = h / 2 if a != b else h
            e = []
            for sign in (1, -1):
                s = atoms.copy()
                s.set_cell(atoms.cell.array @ (np.eye(3) + sign * strain), scale_atoms=True)
                e.append(energy(s))
            fd_stress[a, b] = (e[0] - e[1]) / (2 * h) / atoms.get_volume()
    stress = out[keys.STRESS][0].numpy()
    assert np.abs(stress - fd_stress).max() < 1e-5 * np.abs(stress).max()


def test_supercell_consistency_for_cell_smaller_than_cutoff():
    pot = _potential()
    cell = bulk("Cu", "fcc", a=3.6)  # primitive cell, 2.55 Å vectors < 4 Å cutoff
    cell.numbers[0] = 29
    cell.positions[0] += [0.05, -0.02, 0.03]
    e1 = pot(_data(cell))[keys.ENERGY]
    e8 = pot(_data(cell * (2, 2, 2)))[keys.ENERGY]
    torch.testing.assert_close(e8, 8 * e1, atol=1e-10, rtol=1e-10)


def test_energy_continuous_across_cutoff():
    pot = _potential()

    def energy(r: float) -> float:
        atoms = Atoms("CuNi", positions=[[0, 0, 0], [r, 0.3 * r, 0]], pbc=False)
        atoms.positions[1] *= r / np.linalg.norm(atoms.positions[1])
        return float(pot(_data(atoms, cutoff=CUTOFF + 0.5))[keys.ENERGY].detach())

    isolated = energy(CUTOFF + 0.2)
    assert abs(energy(CUTOFF - 1e-3) - isolated) < 1e-9
    assert abs(energy(CUTOFF - 0.5) - isolated) > 1e-6  # the pair does interact inside


def test_direct_heads_shapes_and_equivariance():
    pot = _potential(direct_forces=True)
    assert pot.direct_forces
    atoms = _alloy(seed=8)
    q = _random_rotation(9)
    batch = collate([_data(atoms), _data(_transformed(atoms, q))])
    out = pot(batch)
    n = len(atoms)
    assert out[keys.FORCES].shape == (2 * n, 3) and out[keys.STRESS].shape == (2, 3, 3)
    qt = torch.tensor(q)
    forces, stress = out[keys.FORCES], out[keys.STRESS]
    # equivariant up to the S² grid quadrature of the activations
    tol = {"atol": 1e-5 * float(forces.abs().max()), "rtol": 0.0}
    torch.testing.assert_close(forces[n:], forces[:n] @ qt.T, **tol)
    tol = {"atol": 1e-5 * float(stress.abs().max()), "rtol": 0.0}
    torch.testing.assert_close(stress[1], qt @ stress[0] @ qt.T, **tol)
    torch.testing.assert_close(stress[0], stress[0].T)
    assert stress[0].abs().max() > 0 and out[keys.FORCES].abs().max() > 0


@pytest.fixture(scope="module")
def preset_counts() -> dict[str, dict[str, int]]:
    """Parameter counts (total and per head) of every preset, built on the meta device."""
    counts = {}
    for name, cfg in EQV2_PRESETS.items():
        model = build_model("eqv2", cfg, device="meta")
        parts = {"total": sum(p.numel() for p in model.parameters())}
        for head in ("energy_head", "force_head", "stress_head"):
            if hasattr(model, head):
                parts[head] = sum(p.numel() for p in getattr(model, head).parameters())
        counts[name] = parts
    return counts


def test_omat24_preset_counts_match_published(preset_counts):
    published = {
        "eqv2-S": (27_795_584, 148_353, 3_130_881, 132_616, 31_207_434),
        "eqv2-M": (78_831_232, 181_377, 7_443_841, 132_618, 86_589_068),
        "eqv2-L": (146_553_472, 181_377, 6_902_401, 132_618, 153_769_868),
    }
    for name, (backbone, energy, force, stress, total) in published.items():
        c = preset_counts[name]
        heads = (c["energy_head"], c["force_head"], c["stress_head"])
        assert abs(c["total"] - total) <= 0.02 * total
        assert (c["total"] - sum(heads), *heads, c["total"]) == (
            backbone,
            energy,
            force,
            stress,
            total,
        )


def test_all_preset_counts_exact_and_ladder_geometric(preset_counts):
    for name in EQV2_PRESETS:
        assert preset_counts[name]["total"] == EQV2_PRESET_PARAMS[name], name
    assert count_parameters("eqv2", EQV2_PRESETS["eqv2-1.5k"]) == EQV2_PRESET_PARAMS["eqv2-1.5k"]
    omat24 = ("eqv2-S", "eqv2-M", "eqv2-L")
    ladder = sorted(n for name, n in EQV2_PRESET_PARAMS.items() if name not in omat24)
    assert len(ladder) >= 8 and ladder[0] < 3e3 and ladder[-1] > 1e8
    ratios = np.array(ladder[1:]) / np.array(ladder[:-1])
    assert ratios.min() > 1.5 and ratios.max() < 5
    for name in EQV2_PRESETS:
        assert EQV2_PRESETS[name]["direct_forces"] == (name in omat24)


SMALL = [n for n, c in EQV2_PRESET_PARAMS.items() if c <= 2_000_000]


@pytest.mark.parametrize("name", SMALL)
def test_small_preset_forward_backward_batch_of_8(name):
    cfg = EQV2_PRESETS[name]
    model = build_model("eqv2", cfg)
    pot = Potential(model, "eqv2", cfg, species=[13, 28, 29]).float()
    structures = []
    for i in range(8):
        atoms = bulk(("Cu", "Ni", "Al")[i % 3], "bcc", a=4.6, cubic=True)
        atoms.rattle(0.05, seed=i)
        structures.append(_data(atoms, cfg["cutoff"], torch.float32))
    out = pot(collate(structures), create_graph=True)
    loss = out[keys.ENERGY].square().mean() + out[keys.FORCES].square().mean()
    loss = loss + out[keys.STRESS].square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 0 and all(torch.isfinite(g).all() for g in grads)
    assert out[keys.FORCES].shape == (16, 3) and out[keys.STRESS].shape == (8, 3, 3)


def test_dropout_only_while_training():
    atoms = _alloy(seed=10)
    plain = _potential()
    dropped = _potential(alpha_drop=0.5, drop_path_rate=0.5)
    dropped.load_state_dict(plain.state_dict())
    ref = plain(_data(atoms))[keys.ENERGY]
    dropped.eval()
    torch.testing.assert_close(dropped(_data(atoms))[keys.ENERGY], ref)
    dropped.train()
    torch.manual_seed(11)
    energies = torch.stack([dropped(_data(atoms))[keys.ENERGY] for _ in range(4)])
    assert not torch.allclose(energies, ref.expand_as(energies))


def test_neighbour_cap_keeps_the_nearest():
    from mlip_scaling.models.equiformer_v2.model import _nearest_mask

    data = compute_edge_vectors(_data(_alloy(seed=12)))
    centre, lengths = data[keys.EDGE_INDEX][0], data[keys.EDGE_LENGTHS]
    keep = _nearest_mask(centre, lengths, 5, 4)
    for atom in range(4):
        mine = lengths[centre == atom]
        kept = lengths[(centre == atom) & keep]
        assert len(kept) == 5 and kept.max() <= torch.sort(mine).values[5]
    capped = _potential(max_neighbors=5)
    assert torch.isfinite(capped(_data(_alloy(seed=12)))[keys.FORCES]).all()
