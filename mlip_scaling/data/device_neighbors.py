"""Neighbour lists of batched systems built where the positions live (CPU or GPU).

Uses vesin's torch interface (package ``vesin-torch``, part of the ``torchsim`` extra), so
positions never travel to the host: the geometry checks of :mod:`mlip_scaling.data.neighbors`
run on a few numbers per system (finite flags, cells, extents along non-periodic
directions, the closest pair distance) and only a structure that fails one is copied to
the host to write its error. The pairs and their order equal those of
:func:`mlip_scaling.calculators.inference.sorted_neighbors` (centre, neighbour, image).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch

from mlip_scaling.data.neighbors import (
    MIN_DISTANCE,
    check_distances,
    check_geometry,
    check_shape,
    non_periodic_basis,
)

try:
    from vesin_torch import NeighborList
except ImportError:  # vesin-torch before the ``vesin_torch`` module name
    from vesin.torch import NeighborList

__all__ = ["DeviceNeighborList"]

#: The name of system ``b`` of a batch, for errors.
Names = Callable[[int], str]


class DeviceNeighborList:
    """Checked neighbour lists of a batch of systems at ``cutoff`` Å, on the batch's device.

    ``__call__(positions [N,3], cells [B,3,3] (rows, Å), pbc [B,3] bool array, counts [B]
    atoms per system, name)`` returns, for each system, ``edge_index`` [2,E_b] (atom
    indices within the system, centre first) and integer ``shifts`` [E_b,3] with
    r_ij = r_j - r_i + shifts @ cell, both int64 on the positions' device (batch them with
    :func:`~mlip_scaling.data.atomic_data.collate`); a bad system raises a one-line
    :class:`~mlip_scaling.errors.DataError` naming it through ``name(b)``.
    """

    def __init__(self, cutoff: float) -> None:
        self.cutoff = float(cutoff)
        self._nl = NeighborList(cutoff=self.cutoff, full_list=True)

    def __call__(
        self, positions: torch.Tensor, cells: torch.Tensor, pbc: np.ndarray,
        counts: Sequence[int], name: Names,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        bounds = np.concatenate([[0], np.cumsum(counts)]).astype(int).tolist()
        parts = [slice(bounds[b], bounds[b + 1]) for b in range(len(counts))]
        cells_np = self._check_geometry(positions, cells, pbc, parts, name)
        lists, closest = [], []
        for b, part in enumerate(parts):
            i, j, shift, d = self._nl.compute(points=positions[part], box=cells[b],
                                              periodic=torch.from_numpy(pbc[b].copy()),
                                              quantities="ijSd")
            closest.append(d.min() if len(d) else d.new_full((), np.inf))
            lists.append(_canonical(i.long(), j.long(), shift.long(), part.stop - part.start))
        if closest and bool((torch.stack(closest) < MIN_DISTANCE).any()):
            self._raise_overlap(positions, cells_np, pbc, parts, name)
        return lists

    def _check_geometry(
        self, positions: torch.Tensor, cells: torch.Tensor, pbc: np.ndarray,
        parts: list[slice], name: Names,
    ) -> np.ndarray:
        """Run the checks of :func:`check_geometry` per system; return the cells on the host."""
        finite = torch.isfinite(positions).all() & torch.isfinite(cells).all()
        cells_np = cells.detach().cpu().numpy().astype(np.float64)
        if not bool(finite):
            for b, part in enumerate(parts):
                check_geometry(positions[part].detach().cpu().numpy(), cells_np[b], pbc[b],
                               self.cutoff, partial(name, b))
        extents = []
        for b, part in enumerate(parts):
            if pbc[b].all() or part.stop == part.start:
                extents.append(positions.new_zeros(0))
                continue
            basis = torch.from_numpy(non_periodic_basis(cells_np[b], pbc[b]))
            projected = positions[part] @ basis.to(positions).T
            extents.append(projected.amax(dim=0) - projected.amin(dim=0))
        extents_np = torch.cat(extents).cpu().numpy().astype(np.float64)
        sizes = np.cumsum([len(e) for e in extents])[:-1]
        for b, (part, ext) in enumerate(zip(parts, np.split(extents_np, sizes))):
            check_shape(cells_np[b], pbc[b], ext, part.stop - part.start, self.cutoff,
                        partial(name, b))
        return cells_np

    def _raise_overlap(
        self, positions: torch.Tensor, cells_np: np.ndarray, pbc: np.ndarray,
        parts: list[slice], name: Names,
    ) -> None:
        """Raise the error of :func:`check_distances` for the first system with overlapping
        atoms (built again on the host, where the error is written)."""
        for b, part in enumerate(parts):
            i, j, _, d = self._nl.compute(
                points=positions[part].detach().cpu().double(),
                box=torch.from_numpy(cells_np[b]), periodic=torch.from_numpy(pbc[b].copy()),
                quantities="ijSd",
            )
            check_distances(np.square(d.numpy()), i.numpy(), j.numpy(), partial(name, b))


def _canonical(
    i: torch.Tensor, j: torch.Tensor, shifts: torch.Tensor, n_atoms: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs sorted by (centre, neighbour, image), as ``sorted_neighbors`` orders them."""
    if len(i) == 0:
        return torch.stack([i, j]), shifts
    span = shifts.abs().max() * 2 + 1
    code = (shifts[:, 0] * span + shifts[:, 1]) * span + shifts[:, 2] + span**3 // 2
    order = torch.argsort((i * n_atoms + j) * span**3 + code, stable=True)
    return torch.stack([i[order], j[order]]), shifts[order]
