"""The neighbour list equals ASE's on awkward cells; edge vectors match ASE's 'D'."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import fcc111, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import compute_edge_vectors, from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform, neighbor_list


def _pairs(i, j, shifts) -> list:
    return sorted(zip(np.asarray(i).tolist(), np.asarray(j).tolist(),
                      map(tuple, np.asarray(shifts, dtype=int).tolist())))


def _check(atoms: Atoms, cutoff: float) -> None:
    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    i, j, s, d = ase_neighbor_list("ijSD", atoms, cutoff)
    assert _pairs(edge_index[0], edge_index[1], shifts) == _pairs(i, j, s)
    data = compute_edge_vectors(NeighborListTransform(cutoff)(from_atoms(atoms, labels=False)))
    ours = {p: v for p, v in zip(_pairs(*data[keys.EDGE_INDEX], data[keys.EDGE_CELL_SHIFT]),
                                 data[keys.EDGE_VECTORS].numpy()[np.lexsort(
                                     (data[keys.EDGE_CELL_SHIFT][:, 2].numpy(),
                                      data[keys.EDGE_CELL_SHIFT][:, 1].numpy(),
                                      data[keys.EDGE_CELL_SHIFT][:, 0].numpy(),
                                      data[keys.EDGE_INDEX][1].numpy(),
                                      data[keys.EDGE_INDEX][0].numpy()))])}
    ref = {(a, b, tuple(c)): v for a, b, c, v in zip(i.tolist(), j.tolist(),
                                                     s.astype(int).tolist(), d)}
    for key, vec in ref.items():
        np.testing.assert_allclose(ours[key], vec, atol=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_random_triclinic_cells(seed):
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * 4.0 + rng.normal(scale=1.2, size=(3, 3))
    atoms = Atoms("Cu6", scaled_positions=rng.random((6, 3)), cell=cell, pbc=True)
    _check(atoms, 5.0)


def test_one_atom_cell_three_times_smaller_than_cutoff():
    atoms = Atoms("Cu", positions=[[0.1, 0.2, 0.3]], cell=np.eye(3) * 2.0, pbc=True)
    _check(atoms, 6.0)
    edge_index, _ = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 6.0)
    assert edge_index.shape[1] == 92  # lattice points with |S|² < 9, self excluded


def test_molecule_without_cell():
    _check(molecule("CH3CH2OH"), 3.0)


def test_slab_with_mixed_periodicity():
    slab = fcc111("Pt", (2, 2, 3), vacuum=6.0)
    slab.rattle(0.05, seed=1)
    assert slab.pbc.tolist() == [True, True, False]
    _check(slab, 5.0)


def test_edge_vectors_carry_gradients_to_positions():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1.5, 1.0, 0.5]], cell=np.eye(3) * 3.0, pbc=True)
    data = NeighborListTransform(4.0)(from_atoms(atoms, labels=False))
    data[keys.POSITIONS].requires_grad_(True)
    lengths = compute_edge_vectors(data)[keys.EDGE_LENGTHS]
    (grad,) = torch.autograd.grad(lengths.sum(), data[keys.POSITIONS])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
