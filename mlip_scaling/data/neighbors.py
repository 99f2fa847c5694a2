"""Neighbour lists (vesin) as a data transform, and the geometry checks that guard them.

Every neighbour list is built after :func:`check_geometry` (finite coordinates, cell heights,
span of non-periodic directions, estimated neighbours per atom: all O(N)) and its pair
distances are checked against :data:`MIN_DISTANCE`; a bad structure raises a one-line
:class:`~mlip_scaling.errors.DataError` naming the structure instead of a NaN, a crash of
the neighbour-list library or an allocation of many GB.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from mlip_scaling import keys
from mlip_scaling.errors import DataError

__all__ = ["neighbor_list", "NeighborListTransform", "check_geometry", "check_distances",
           "check_shape", "non_periodic_basis",
           "MIN_DISTANCE", "MIN_CELL_HEIGHT", "MAX_SPAN_CUTOFFS", "MAX_NEIGHBORS"]

#: Closest allowed approach of two atoms (or of an atom and its periodic image), Å.
MIN_DISTANCE = 0.1
#: Smallest allowed distance between opposite faces of the periodic cell, Å.
MIN_CELL_HEIGHT = 0.5
#: Largest allowed extent of the atoms along a non-periodic direction, in cutoffs.
MAX_SPAN_CUTOFFS = 200.0
#: Largest allowed estimate of the mean number of neighbours per atom.
MAX_NEIGHBORS = 10_000

#: A structure's name, or a function that makes it (called only to write an error).
Where = str | Callable[[], str]


def _name(where: Where) -> str:
    return where() if callable(where) else where


def _measure(vectors: np.ndarray) -> float:
    """Length / area / volume spanned by the rows of ``vectors`` (1 for none)."""
    if len(vectors) == 0:
        return 1.0
    return float(np.sqrt(max(np.linalg.det(vectors @ vectors.T), 0.0)))


def _cross(u: list[float], v: list[float]) -> list[float]:
    return [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]]


def _cell_heights(cell: np.ndarray, periodic: np.ndarray) -> tuple[list[float], float]:
    """Heights of the periodic cell (distances between opposite faces, within the periodic
    subspace, one per periodic vector) and its measure (volume, area or length)."""
    if len(periodic) == 3:  # the common case, in plain floats (a few µs): V / |b x c| etc.
        a, b, c = cell.tolist()
        crosses = [_cross(b, c), _cross(c, a), _cross(a, b)]
        whole = abs(sum(x * y for x, y in zip(a, crosses[0])))
        rests = [sum(x * x for x in v) ** 0.5 for v in crosses]
    else:
        whole = _measure(cell[periodic])
        rests = [_measure(cell[np.delete(periodic, k)]) for k in range(len(periodic))]
    return [whole / rest if rest > 0 else 0.0 for rest in rests], whole


def _thinnest(cell: np.ndarray, periodic: np.ndarray, heights: list[float]) -> int:
    """The cell vector to name for the least height: among ties, one whose removal leaves
    a sound cell, then the shortest."""
    rests_zero = [_measure(cell[np.delete(periodic, k)]) == 0 for k in range(len(periodic))]
    norms = np.linalg.norm(cell[periodic], axis=1)
    return int(periodic[np.lexsort((norms, rests_zero, heights))[0]])


def non_periodic_basis(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """[K,3] orthonormal directions perpendicular to the periodic cell vectors (K = number
    of non-periodic directions)."""
    periodic = np.flatnonzero(pbc)
    if len(periodic) == 0:
        return np.eye(3)
    return np.linalg.svd(cell[periodic])[2][len(periodic):]


def _extents(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Extent (Å) of the atoms along the directions of :func:`non_periodic_basis`."""
    if np.all(pbc):
        return np.zeros(0)
    basis = non_periodic_basis(cell, pbc)
    projected = positions @ basis.T
    return projected.max(axis=0) - projected.min(axis=0)


def check_geometry(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float, where: Where
) -> None:
    """Raise :class:`DataError` if a neighbour list at ``cutoff`` (Å) cannot be built safely.

    Checks, in O(N): finite positions [N,3] and cell [3,3] (Å); heights of the periodic cell
    >= :data:`MIN_CELL_HEIGHT`; extent along non-periodic directions <=
    :data:`MAX_SPAN_CUTOFFS` cutoffs; estimated neighbours per atom <= :data:`MAX_NEIGHBORS`.
    """
    if not np.isfinite(positions).all():
        atom = int(np.flatnonzero(~np.isfinite(positions).all(axis=1))[0])
        raise DataError(f"{_name(where)}: position of atom {atom} is not finite (NaN or inf)")
    if not np.isfinite(cell).all():
        raise DataError(f"{_name(where)}: the cell contains NaN or inf")
    check_shape(cell, pbc, _extents(positions, cell, pbc), len(positions), cutoff, where)


def check_shape(
    cell: np.ndarray, pbc: np.ndarray, extents: np.ndarray, n_atoms: int, cutoff: float,
    where: Where,
) -> None:
    """The checks of :func:`check_geometry` after the finite ones, from the cell [3,3] (Å),
    ``pbc`` [3] and the atoms' ``extents`` (Å) along the directions of
    :func:`non_periodic_basis` (so a caller holding positions elsewhere, e.g. on a GPU,
    needs to bring only these few numbers to the host)."""
    periodic = np.flatnonzero(pbc)
    heights, measure = _cell_heights(cell, periodic)
    if heights and min(heights) < MIN_CELL_HEIGHT:
        k = _thinnest(cell, periodic, heights)
        raise DataError(f"{_name(where)}: the periodic cell is {min(heights):.3g} Å thick "
                        f"along cell vector {k} (minimum {MIN_CELL_HEIGHT} Å): a degenerate or "
                        "non-reduced cell (reduce it, e.g. ase.geometry.minkowski_reduce)")
    if len(extents) and extents.max() > MAX_SPAN_CUTOFFS * cutoff:
        raise DataError(f"{_name(where)}: the atoms span {extents.max():.3g} Å along a "
                        f"non-periodic direction, more than {MAX_SPAN_CUTOFFS:g} times the "
                        f"{cutoff:g} Å neighbour-list cutoff (atoms far apart: split the "
                        "structure or make it periodic)")
    reach = 2.0 * cutoff
    # atoms in a cube of side 2·cutoff around an atom (spread evenly), times sphere / cube
    estimate = n_atoms * reach ** len(periodic) / measure * math.pi / 6.0
    for extent in extents.tolist():
        estimate *= min(1.0, reach / extent) if extent > 0 else 1.0
    if estimate > MAX_NEIGHBORS:
        raise DataError(f"{_name(where)}: about {estimate:.3g} neighbours per atom within "
                        f"{cutoff:g} Å (more than {MAX_NEIGHBORS:,}): the atoms are packed "
                        "far too densely or the cell is far too small")


def check_distances(
    distances_sq: np.ndarray, i: np.ndarray, j: np.ndarray, where: Where
) -> None:
    """Raise :class:`DataError` if a pair is closer than :data:`MIN_DISTANCE`.

    Args:
        distances_sq: [E] squared pair distances, Å^2 (of a neighbour list).
        i, j: [E] atom indices of the pairs.
    """
    if len(distances_sq) == 0 or distances_sq.min() >= MIN_DISTANCE**2:
        return
    k = int(np.argmin(distances_sq))
    a, b = sorted((int(i[k]), int(j[k])))
    d = float(np.sqrt(distances_sq[k]))
    pair = (f"atom {a} is {d:.3g} Å from its own periodic image" if a == b
            else f"atoms {a} and {b} are {d:.3g} Å apart")
    raise DataError(f"{_name(where)}: {pair} (minimum {MIN_DISTANCE} Å): overlapping atoms")


def _pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        from vesin import NeighborList
    except ImportError:  # pragma: no cover - vesin is a hard dependency; matscipy as fallback
        from matscipy.neighbours import neighbour_list

        return neighbour_list("ijSd", positions=positions, cell=cell, pbc=pbc, cutoff=cutoff)
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    return nl.compute(points=positions, box=cell, periodic=pbc, quantities="ijSd")


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray | bool,
    cutoff: float,
    where: Where = "structure",
) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (i, j, image) with |r_j + S·cell − r_i| < cutoff, i ≠ j or S ≠ 0.

    Args:
        positions: [N, 3] Cartesian positions, Å.
        cell: [3, 3] lattice vectors as rows, Å (ignored along non-periodic directions).
        pbc: [3] bools or one bool.
        cutoff: radius, Å.
        where: the structure's name for errors (see :func:`check_geometry`,
            :func:`check_distances`, which run before and after the build).

    Returns:
        edge_index [2, E] int64 (row 0 = centre i, row 1 = neighbour j) and
        shifts [E, 3] int64 such that r_ij = r_j − r_i + shifts @ cell.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    if len(positions) == 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    check_geometry(positions, cell, pbc, float(cutoff), where)
    i, j, shifts, d = _pairs(positions, cell, pbc, float(cutoff))
    check_distances(np.square(d), i, j, where)
    order = np.lexsort((j, i))  # deterministic order: by centre, then neighbour
    edge_index = np.stack([i[order], j[order]]).astype(np.int64)
    return edge_index, np.asarray(shifts, dtype=np.int64)[order]


class NeighborListTransform:
    """Adds ``edge_index`` and ``edge_cell_shift`` to a single-structure data dict."""

    def __init__(self, cutoff: float) -> None:
        self.cutoff = float(cutoff)

    def __call__(
        self, data: dict[str, torch.Tensor], where: Where = "structure"
    ) -> dict[str, torch.Tensor]:
        """``data`` with its neighbour list; ``where`` names the structure in errors."""
        edge_index, shifts = neighbor_list(
            data[keys.POSITIONS].detach().cpu().numpy(),
            data[keys.CELL][0].detach().cpu().numpy(),
            data[keys.PBC][0].cpu().numpy(),
            self.cutoff,
            where,
        )
        out = dict(data)
        out[keys.EDGE_INDEX] = torch.from_numpy(edge_index)
        out[keys.EDGE_CELL_SHIFT] = torch.from_numpy(shifts).to(data[keys.POSITIONS].dtype)
        return out

    def __repr__(self) -> str:
        return f"NeighborListTransform(cutoff={self.cutoff})"
