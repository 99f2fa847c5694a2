"""GemNet-OC family: graphs, triplets and quadruplets against direct enumeration, the bases'
orthonormality, smoothness across the inner cutoffs, the direct force head's symmetries and
the two variants sharing weights. Agreement with fairchem: tests/test_gemnet_fairchem.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import compute_edge_vectors, from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.models import registry
from mlip_scaling.models.gemnet_oc import bases
from mlip_scaling.models.gemnet_oc.graph import (
    Edges,
    cap_neighbors,
    quadruplets,
    symmetrize,
    triplets,
)
from mlip_scaling.models.potential import Potential

CONFIG = {
    "cutoff": 3.4,
    "num_blocks": 2,
    "emb_size_atom": 8,
    "emb_size_edge": 8,
    "emb_size_trip_in": 4,
    "emb_size_trip_out": 4,
    "emb_size_rbf": 4,
    "emb_size_cbf": 4,
    "num_radial": 6,
    "num_spherical": 3,
    "cutoff_main": 3.1,
    "cutoff_qint": 2.8,
    "cutoff_aeaint": 3.2,
    "num_atom_emb_layers": 1,
}


def _crystal(seed: int = 3) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.cell[1] += [0.3, 0.0, 0.2]
    atoms.numbers[[1, 3]] = [28, 13]
    atoms.rattle(0.1, seed=seed)
    return atoms


def _graph(atoms: Atoms, cutoff: float) -> dict:
    data = NeighborListTransform(cutoff)(from_atoms(atoms, labels=False, dtype=torch.float64))
    return compute_edge_vectors(data)


def _edges(atoms: Atoms, cutoff: float) -> Edges:
    data = _graph(atoms, cutoff)
    return Edges(
        data[keys.EDGE_INDEX],
        data[keys.EDGE_CELL_SHIFT].round().long(),
        data[keys.EDGE_VECTORS],
        data[keys.EDGE_LENGTHS],
    )


def _image(edges: Edges, e: int) -> tuple:
    """(neighbour atom, its cell shift) of edge ``e``."""
    return int(edges.index[1, e]), tuple(edges.shift[e].tolist())


def test_triplets_and_quadruplets_match_enumeration():
    atoms = _crystal()
    main, swap = symmetrize(_edges(atoms, 3.0))
    qint = _edges(atoms, 2.7)
    n, rng_main, rng_q = len(atoms), range(len(main.length)), range(len(qint.length))
    got = set(zip(*[t.tolist() for t in triplets(main, main, len(atoms))]))
    want = {
        (o, e)
        for o, e in itertools.product(rng_main, rng_main)
        if main.index[0, o] == main.index[0, e] and o != e
    }
    assert got == want and len(want) > 100
    quad = quadruplets(main, qint, n)
    got = set(
        zip(
            quad["quad_out"].tolist(),
            quad["out_q"][quad["quad_trip"]].tolist(),
            quad["in_d"][quad["quad_in"]].tolist(),
        )
    )
    assert len(got) == len(quad["quad_out"])
    want = set()
    for o, q in itertools.product(rng_main, rng_q):  # c -> a <- b, with b not c's image
        if main.index[0, o] != qint.index[0, q] or _image(main, o) == _image(qint, q):
            continue
        b, shift_b = _image(qint, q)
        for d in rng_main:  # d -> b: neither a (behind q) nor c
            atom_d, shift_d = _image(main, d)
            image_d = tuple(np.add(shift_b, shift_d))
            if main.index[0, d] == b and (atom_d, image_d) not in (
                (int(qint.index[0, q]), (0, 0, 0)),
                _image(main, o),
            ):
                want.add((o, q, d))
    assert got == want and len(want) > 1000


def test_symmetrize_keeps_one_direction_and_appends_the_reverse():
    edges = cap_neighbors(_edges(_crystal(), 3.4), 9, 4, strict=True, squared=True)
    assert torch.bincount(edges.index[0]).max() == 9  # capped: not symmetric
    full, swap = symmetrize(edges)
    torch.testing.assert_close(full.vector[swap], -full.vector, rtol=0, atol=0)
    assert torch.equal(full.index[:, swap], full.index.flip(0))
    assert torch.equal(full.shift[swap], -full.shift) and torch.equal(
        swap[swap], torch.arange(len(swap))
    )
    kept = {(*e, *s) for e, s in zip(edges.index.T.tolist(), edges.shift.tolist())}
    half = {
        (*e, *s)
        for e, s in zip(full.index.T.tolist(), full.shift.tolist())
        if e[1] < e[0] or (e[1] == e[0] and tuple(s) > (0, 0, 0))
    }
    assert half <= kept and 2 * len(half) == len(full.length)


def test_caps_keep_ties_within_fairchems_tolerance():
    """fairchem keeps every edge up to the (k+1)-th length plus 0.01 (Å, or Å² on squares)."""
    lengths = torch.tensor([1.0, 1.2, 1.205, 2.0, 1.0], dtype=torch.float64)
    edges = Edges(
        torch.tensor([[0, 0, 0, 0, 1], [1, 1, 1, 1, 0]]),
        torch.zeros(5, 3, dtype=torch.long),
        torch.zeros(5, 3),
        lengths,
    )
    assert cap_neighbors(edges, 1, 2, strict=False, squared=False).length.tolist() == [
        1.0,
        1.2,
        1.205,
        1.0,
    ]
    assert cap_neighbors(edges, 1, 2, strict=False, squared=True).length.tolist() == [1.0, 1.2, 1.0]
    assert cap_neighbors(edges, 2, 2, strict=True, squared=False).length.tolist() == [1.0, 1.2, 1.0]


def test_angular_bases_are_orthonormal_on_the_sphere():
    """∫ Y Y' dΩ = δ for the circular (m = 0) and all real spherical harmonics."""
    x, w = np.polynomial.legendre.leggauss(24)
    phi = torch.linspace(0, 2 * np.pi, 49, dtype=torch.float64)[:-1]
    cos = torch.from_numpy(x).repeat_interleave(len(phi))
    weight = torch.from_numpy(w).repeat_interleave(len(phi)) * (2 * np.pi / len(phi))
    sph = bases.spherical_basis(cos, phi.repeat(len(x)), 4, "spherical_harmonics")
    torch.testing.assert_close(
        sph.T @ (weight[:, None] * sph), torch.eye(16, dtype=torch.float64), rtol=0, atol=1e-12
    )
    cir = bases.circular_basis(torch.from_numpy(x), 4)
    gram = cir.T @ (torch.from_numpy(w)[:, None] * cir) * 2 * np.pi
    torch.testing.assert_close(gram, torch.eye(4, dtype=torch.float64), rtol=0, atol=1e-12)
    outer = bases.spherical_basis(cos[:5], phi[:5], 3, "legendre_outer")
    want = (
        bases.circular_basis(cos[:5], 3)[:, :, None]
        * bases.circular_basis(torch.cos(phi[:5]), 3)[:, None, :]
    )
    torch.testing.assert_close(outer, want.reshape(5, 9))


def _potential(config: dict, seed: int = 0) -> Potential:
    torch.manual_seed(seed)
    model = registry.build_model("gemnet", config)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("scale_factor"):
                buf.uniform_(0.5, 1.5)
    return Potential(model, "gemnet", config, [13, 28, 29]).double().eval()


def _predict(pot: Potential, atoms: Atoms) -> dict:
    out = pot(_graph(atoms, pot.cutoff))
    return {k: v.detach().numpy() for k, v in out.items()}


@pytest.mark.parametrize("which", ["cutoff_qint", "cutoff_main", "cutoff_aeaint", "cutoff"])
def test_energy_is_smooth_across_every_cutoff(which):
    """An atom crossing any of the four cutoffs changes the energy with a continuous first
    derivative: second differences across the cutoff fall like δ², not δ."""
    pot = _potential(CONFIG)
    rc = CONFIG[which]

    def energy(distance: float) -> float:
        pos = [
            [0.0, 0.0, 0.0],
            [1.9, 0.3, 0.0],
            [0.0, distance, 0.0],
            [2.0, -2.1, 0.4],
            [-1.2, 0.8, 1.7],
        ]
        atoms = Atoms(numbers=[29, 28, 13, 29, 28], positions=pos, cell=np.eye(3) * 30, pbc=True)
        return float(_predict(pot, atoms)[keys.ENERGY][0])

    at = energy(rc)
    kinks = [abs(energy(rc - delta) - 2 * at + energy(rc + delta)) for delta in (1e-2, 1e-3)]
    assert kinks[0] > 1e-12
    assert kinks[1] < 0.02 * kinks[0]  # a jump of slope would give 0.1


@pytest.fixture(scope="module")
def direct() -> tuple[Potential, Potential]:
    """(direct-force potential, gradient potential sharing its weights), float64."""
    config = {**CONFIG, "direct_forces": True, "forces_coupled": True}
    pot = _potential(config)
    grad_model = registry.build_model("gemnet", CONFIG)
    missing = grad_model.load_state_dict(pot.model.state_dict(), strict=False)
    assert not missing.missing_keys and all(
        k.startswith(("out_mlp_F", "out_forces")) or "_F." in k or ".seq_forces." in k
        for k in missing.unexpected_keys
    )
    return pot, Potential(grad_model, "gemnet", CONFIG, [13, 28, 29]).double().eval()


def test_direct_heads_are_equivariant(direct):
    pot, _ = direct
    atoms = _crystal()
    ref = _predict(pot, atoms)
    assert np.abs(ref[keys.FORCES]).max() > 1e-4 and np.abs(ref[keys.STRESS]).max() > 1e-6
    np.testing.assert_allclose(ref[keys.FORCES].sum(0), 0.0, atol=1e-12)  # coupled: f_ij = f_ji
    matrix = Rotation.random(random_state=7).as_matrix() @ np.diag([1.0, 1.0, -1.0])
    moved = atoms.copy()
    moved.positions = atoms.positions @ matrix.T
    moved.cell = np.asarray(atoms.cell) @ matrix.T
    order = np.random.default_rng(1).permutation(len(atoms))
    moved = moved[order]
    moved.positions += [1.0, -2.0, 0.5]
    out = _predict(pot, moved)
    np.testing.assert_allclose(out[keys.ENERGY], ref[keys.ENERGY], rtol=1e-10)
    np.testing.assert_allclose(out[keys.FORCES], ref[keys.FORCES][order] @ matrix.T, atol=1e-10)
    np.testing.assert_allclose(
        out[keys.STRESS][0], matrix @ ref[keys.STRESS][0] @ matrix.T, atol=1e-10
    )
    big = _predict(pot, atoms * (2, 1, 1))  # extensive energy, intensive stress
    np.testing.assert_allclose(big[keys.ENERGY], 2 * ref[keys.ENERGY], rtol=1e-10)
    np.testing.assert_allclose(big[keys.STRESS], ref[keys.STRESS], atol=1e-10)


def test_variants_share_the_energy_and_differ_in_forces(direct):
    pot, grad = direct
    atoms = _crystal(seed=4)
    a, b = _predict(pot, atoms), _predict(grad, atoms)
    np.testing.assert_allclose(a[keys.ENERGY], b[keys.ENERGY], rtol=1e-12)
    assert np.abs(b[keys.FORCES]).max() > 1e-3
    assert not np.allclose(a[keys.FORCES], b[keys.FORCES])  # an untrained head is not -dE/dr


def test_direct_model_file_runs_in_the_calculator(direct, tmp_path):
    from mlip_scaling.calculators.ase import ScalingCalculator
    from mlip_scaling.checkpoint import save_potential

    pot, _ = direct
    path = save_potential(tmp_path / "gemnet.pt", pot)
    atoms = _crystal(seed=6)
    calc = ScalingCalculator(path, dtype="float64")
    assert calc.potential.direct_forces and calc.potential.config == pot.config
    got = calc.predict([atoms])[0]
    want = _predict(pot, atoms)
    assert got["energy"] == pytest.approx(float(want[keys.ENERGY][0]), rel=1e-12)
    np.testing.assert_allclose(got["forces"], want[keys.FORCES], atol=1e-12)
