"""GemNet-OC-style family: triplets, reverse edges and quadruplet sums against direct
enumeration; the direct force head's symmetries; shared weights of the two variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from scipy.spatial.transform import Rotation

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import compute_edge_vectors, from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.models import registry
from mlip_scaling.models.gemnet_oc.graph import legendre
from mlip_scaling.models.gemnet_oc.model import EdgeGeometry, quadruplet_sums
from mlip_scaling.models.potential import Potential

CONFIG = {"cutoff": 3.2, "num_blocks": 2, "atom_channels": 8, "edge_channels": 8,
          "triplet_channels": 4, "quad_channels": 4, "num_radial": 6, "num_spherical": 4,
          "num_quad_spherical": 3}


def _crystal(seed: int = 3):
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.cell[1] += [0.3, 0.0, 0.2]
    atoms.numbers[[1, 3]] = [28, 13]
    atoms.rattle(0.1, seed=seed)
    return atoms


def _graph(atoms, cutoff: float = CONFIG["cutoff"]) -> dict:
    data = NeighborListTransform(cutoff)(from_atoms(atoms, labels=False, dtype=torch.float64))
    return compute_edge_vectors(data)


def _geometry(data: dict, num_quad: int = 3) -> EdgeGeometry:
    lengths = data[keys.EDGE_LENGTHS]
    rbf = torch.ones(len(lengths), 1, dtype=lengths.dtype)
    return EdgeGeometry(data, rbf, len(data[keys.POSITIONS]), 2, num_quad)


def test_triplets_and_reverse_edges_match_enumeration():
    data = _graph(_crystal())
    g = _geometry(data)
    centre = data[keys.EDGE_INDEX][0].numpy()
    expected = {(a, b) for a in range(len(centre)) for b in range(len(centre))
                if a != b and centre[a] == centre[b]}
    got = set(zip(g.t_out.tolist(), g.t_in.tolist()))
    assert got == expected and len(g.t_out) == len(expected)
    vec = data[keys.EDGE_VECTORS]
    np.testing.assert_allclose(vec[g.reverse].numpy(), -vec.numpy(), atol=1e-12)
    assert torch.equal(data[keys.EDGE_INDEX][:, g.reverse], data[keys.EDGE_INDEX].flip(0))
    assert sorted(g.reverse.tolist()) == list(range(len(centre)))


def test_quadruplet_sums_equal_the_sum_over_quadruplets():
    data = _graph(_crystal(), cutoff=2.9)
    g = _geometry(data)
    rng = np.random.default_rng(0)
    n_edges = len(g.reverse)
    x_in, x_out = (torch.from_numpy(rng.normal(size=(n_edges, 2))) for _ in range(2))
    got = quadruplet_sums(x_in, x_out, g).numpy()
    src, dst = data[keys.EDGE_INDEX].numpy()
    unit = (data[keys.EDGE_VECTORS] / data[keys.EDGE_LENGTHS][:, None]).numpy()
    rev = g.reverse.numpy()
    expected = np.zeros_like(got)
    count = 0
    for e in range(n_edges):  # central edge i -> j
        for k in np.flatnonzero(src == src[e]):
            for lo in np.flatnonzero(src == dst[e]):
                if k == e or lo == rev[e]:
                    continue
                cos1, cos2 = unit[e] @ unit[k], -unit[e] @ unit[lo]
                p1 = legendre(torch.tensor(cos1), 3).numpy()
                p2 = legendre(torch.tensor(cos2), 3).numpy()
                n1 = unit[k] - cos1 * unit[e]
                n2 = unit[lo] + cos2 * unit[e]  # component of r̂_jl normal to r̂_ij
                basis = np.concatenate([np.outer(p1, p2).ravel(), [n1 @ n2]])
                expected[e] += (x_in[k].numpy() * x_out[lo].numpy())[:, None] * basis
                count += 1
    assert count > 100
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-11)
    # the dihedral term is cos φ sin θ1 sin θ2: not a function of the two angles alone
    assert np.abs(expected[..., -1]).max() > 0.1


@pytest.fixture(scope="module")
def direct() -> tuple[Potential, Potential]:
    """(direct-force potential, gradient potential sharing its weights), float64."""
    torch.manual_seed(0)
    config = {**CONFIG, "direct_forces": True}
    model = registry.build_model("gemnet", config)
    grad_model = registry.build_model("gemnet", CONFIG)
    missing = grad_model.load_state_dict(model.state_dict(), strict=False)
    assert not missing.missing_keys and all(k.startswith("force_heads")
                                            for k in missing.unexpected_keys)
    species = [13, 28, 29]
    return (Potential(model, "gemnet", config, species).double().eval(),
            Potential(grad_model, "gemnet", CONFIG, species).double().eval())


def _predict(pot: Potential, atoms) -> dict:
    out = pot(_graph(atoms, pot.cutoff))
    return {k: v.detach().numpy() for k, v in out.items()}


def test_direct_heads_are_equivariant(direct):
    pot, _ = direct
    atoms = _crystal()
    ref = _predict(pot, atoms)
    assert np.abs(ref[keys.FORCES]).max() > 1e-3 and np.abs(ref[keys.STRESS]).max() > 1e-5
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
    np.testing.assert_allclose(out[keys.STRESS][0], matrix @ ref[keys.STRESS][0] @ matrix.T,
                               atol=1e-10)
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


def test_quadruplet_cutoff_is_smooth():
    """An atom crossing the shorter quadruplet cutoff changes the quadruplet sums (and so
    the energy) continuously, with a continuous first derivative."""
    from ase import Atoms

    from mlip_scaling.models.blocks import PolynomialCutoff

    envelope = PolynomialCutoff(2.8)

    def sums(distance: float) -> dict:
        # atom 2 (with its neighbour 4) crosses the quadruplet cutoff of atom 0
        pos = [[0.0, 0.0, 0.0], [1.8, 0.0, 0.0], [0.0, distance, 0.0], [2.0, -2.2, 0.1],
               [0.0, distance + 1.8, 0.3]]
        data = _graph(Atoms(numbers=[29, 28, 13, 29, 28], positions=pos))
        lengths = data[keys.EDGE_LENGTHS]
        g = EdgeGeometry(data, torch.ones(len(lengths), 1, dtype=lengths.dtype), 5, 2, 3,
                         envelope(lengths))
        ones = torch.ones(len(lengths), 1, dtype=lengths.dtype)
        out = quadruplet_sums(ones, 0.5 * ones, g).numpy()
        return {tuple(e): row for e, row in zip(data[keys.EDGE_INDEX].T.tolist(), out)}

    inside = sums(2.5)
    assert np.abs(inside[(0, 2)]).max() > 1e-3  # the crossing edge has quadruplets
    gaps = []
    for delta in (1e-2, 1e-3, 1e-4):
        a, b = sums(2.8 - delta), sums(2.8 + delta)
        assert a.keys() == b.keys()
        gaps.append(max(np.abs(a[k] - b[k]).max() for k in a))
    # the envelope's value and slope vanish at the cutoff: gaps fall like delta^2 or faster
    assert gaps[1] < 0.02 * gaps[0] and gaps[2] < 0.02 * gaps[1]
