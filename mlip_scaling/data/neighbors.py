"""Neighbour lists (vesin) as a data transform."""

from __future__ import annotations

import numpy as np
import torch

from mlip_scaling import keys

__all__ = ["neighbor_list", "NeighborListTransform"]


def _pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        from vesin import NeighborList
    except ImportError:  # pragma: no cover - vesin is a hard dependency; matscipy as fallback
        from matscipy.neighbours import neighbour_list

        return neighbour_list("ijS", positions=positions, cell=cell, pbc=pbc, cutoff=cutoff)
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    return nl.compute(points=positions, box=cell, periodic=pbc, quantities="ijS")


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray | bool, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (i, j, image) with |r_j + S·cell − r_i| < cutoff, i ≠ j or S ≠ 0.

    Args:
        positions: [N, 3] Cartesian positions, Å.
        cell: [3, 3] lattice vectors as rows, Å (ignored along non-periodic directions).
        pbc: [3] bools or one bool.
        cutoff: radius, Å.

    Returns:
        edge_index [2, E] int64 (row 0 = centre i, row 1 = neighbour j) and
        shifts [E, 3] int64 such that r_ij = r_j − r_i + shifts @ cell.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    if len(positions) == 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    i, j, shifts = _pairs(positions, cell, pbc, float(cutoff))
    order = np.lexsort((j, i))  # deterministic order: by centre, then neighbour
    edge_index = np.stack([i[order], j[order]]).astype(np.int64)
    return edge_index, np.asarray(shifts, dtype=np.int64)[order]


class NeighborListTransform:
    """Adds ``edge_index`` and ``edge_cell_shift`` to a single-structure data dict."""

    def __init__(self, cutoff: float) -> None:
        self.cutoff = float(cutoff)

    def __call__(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        edge_index, shifts = neighbor_list(
            data[keys.POSITIONS].detach().cpu().numpy(),
            data[keys.CELL][0].detach().cpu().numpy(),
            data[keys.PBC][0].cpu().numpy(),
            self.cutoff,
        )
        out = dict(data)
        out[keys.EDGE_INDEX] = torch.from_numpy(edge_index)
        out[keys.EDGE_CELL_SHIFT] = torch.from_numpy(shifts).to(data[keys.POSITIONS].dtype)
        return out

    def __repr__(self) -> str:
        return f"NeighborListTransform(cutoff={self.cutoff})"
