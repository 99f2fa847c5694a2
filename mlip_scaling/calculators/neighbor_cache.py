"""Neighbour lists kept between calculator calls: built with a skin, reused while valid.

A list built at ``cutoff + skin`` still holds every pair closer than ``cutoff`` after the
atoms moved and the cell deformed a little. With the deformation ``F`` taking the
build-time cell to the current one (``cell = cell0 @ F``) and ``delta`` the largest move of
an atom once the deformation is undone (``|r @ F^-1 - r0|``), a pair left out at the build
(distance >= ``cutoff + skin``) is now at least ``sigma_min(F) * (cutoff + skin - 2 delta)``
apart; the list is valid while that bound is >= ``cutoff``. For an unchanged cell this is
the usual rule (no atom moved more than ``skin / 2``).

Several lists are kept (most recently used first), so that one calculator serving several
structures (the images of a NEB, a batch of candidates) does not rebuild at every call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlip_scaling.data.neighbors import Where, check_distances

__all__ = ["NeighborCache", "ResultCache", "MAX_ENTRIES", "MAX_PAIRS"]

#: Most lists kept at once (one per structure served by a calculator).
MAX_ENTRIES = 16
#: Most pairs kept over all lists (~100 bytes each); older lists are dropped beyond it.
MAX_PAIRS = 4_000_000
#: ``build(positions, cell, pbc, cutoff, where)`` -> (edge_index [2,E], shifts [E,3]),
#: pairs in canonical order (centre, neighbour, image).
Builder = Callable[[np.ndarray, np.ndarray, np.ndarray, float, Where],
                   tuple[np.ndarray, np.ndarray]]
#: Safety margin (Å) on the validity bound, far above rounding of the positions.
_MARGIN = 1e-9


class _Entry:
    """One list at ``cutoff + skin``: its pairs in canonical order and the build state."""

    def __init__(self, edge_index: np.ndarray, shifts: np.ndarray, positions: np.ndarray,
                 cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray) -> None:
        self.pairs = np.concatenate([edge_index.T, shifts], axis=1)  # [E, 5]: i, j, shift
        self.i, self.j = edge_index[0].copy(), edge_index[1].copy()
        self.shifts = shifts.astype(np.float64)
        self.positions, self.cell = positions.copy(), cell.copy()
        self.pbc, self.numbers = pbc.copy(), numbers.copy()
        self.inverse_cell = np.linalg.inv(cell) if pbc.all() else None

    def valid(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
              numbers: np.ndarray, cutoff: float, skin: float) -> bool:
        """Whether every pair closer than ``cutoff`` now is in this list."""
        if len(numbers) != len(self.numbers) or not (
            np.array_equal(numbers, self.numbers) and np.array_equal(pbc, self.pbc)
        ):
            return False
        if np.array_equal(cell, self.cell):
            moved = positions - self.positions
            return bool(np.einsum("ij,ij->i", moved, moved).max(initial=0.0)
                        <= (0.5 * skin) ** 2)
        if self.inverse_cell is None:
            return False  # a non-periodic direction: a cell change is not tracked
        deform = self.inverse_cell @ cell  # F, with cell = cell0 @ F
        sigma = float(np.linalg.svd(deform, compute_uv=False).min())
        if not sigma > 0.0:
            return False
        moved = positions @ np.linalg.inv(deform) - self.positions
        delta = float(np.sqrt(np.einsum("ij,ij->i", moved, moved).max(initial=0.0)))
        return sigma * (cutoff + skin - 2.0 * delta) >= cutoff + _MARGIN


class NeighborCache:
    """Neighbour lists at ``cutoff + skin`` Å, reused while valid (see the module doc).

    Each call filters the stored pairs to the current distance < ``cutoff``, keeping their
    canonical order, so the result equals a freshly built list. ``builds`` counts the lists
    built so far.
    """

    def __init__(self, cutoff: float, skin: float, build: Builder,
                 max_entries: int = MAX_ENTRIES, max_pairs: int = MAX_PAIRS) -> None:
        self.cutoff, self.skin = float(cutoff), float(skin)
        self._build = build
        self.max_entries, self.max_pairs = int(max_entries), int(max_pairs)
        self.entries: list[_Entry] = []
        self.builds = 0

    def __call__(
        self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray,
        where: Where = "structure",
    ) -> tuple[np.ndarray, np.ndarray]:
        """``edge_index`` [2,E] and ``shifts`` [E,3] of the pairs closer than ``cutoff``
        (DataError naming ``where`` when two atoms overlap)."""
        entry = self._lookup(positions, cell, pbc, numbers)
        if entry is None:
            entry = self._add(positions, cell, pbc, numbers, where)
        vec = positions.take(entry.j, axis=0) - positions.take(entry.i, axis=0)
        vec += entry.shifts @ cell
        dist_sq = np.einsum("ij,ij->i", vec, vec)
        check_distances(dist_sq, entry.i, entry.j, where)
        keep = dist_sq < self.cutoff**2
        pairs = entry.pairs if keep.all() else entry.pairs[keep]
        return pairs[:, :2].T, pairs[:, 2:]

    def _lookup(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                numbers: np.ndarray) -> _Entry | None:
        for k, entry in enumerate(self.entries):
            if entry.valid(positions, cell, pbc, numbers, self.cutoff, self.skin):
                self.entries.insert(0, self.entries.pop(k))
                return entry
        return None

    def _add(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
             numbers: np.ndarray, where: Where) -> _Entry:
        edge_index, shifts = self._build(positions, cell, pbc, self.cutoff + self.skin, where)
        entry = _Entry(edge_index, shifts, positions, cell, pbc, numbers)
        self.entries.insert(0, entry)
        self.builds += 1
        kept = 0
        for k, old in enumerate(self.entries):
            kept += len(old.pairs)
            if k > 0 and (k >= self.max_entries or kept > self.max_pairs):
                del self.entries[k:]
                break
        return entry


class ResultCache:
    """Results of the last ``size`` structures, given back for identical inputs (same
    numbers, positions, cell, pbc; the model's weights are fixed once loaded).

    ASE keeps one result per calculator, so a calculator shared by the images of a NEB,
    asked for each image's forces and then energies in turn, would otherwise evaluate every
    image several times per step.
    """

    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self.size = int(size)
        self.items: list[tuple[tuple[np.ndarray, ...], dict]] = []
        self.hits = 0

    @staticmethod
    def _key(atoms) -> tuple[np.ndarray, ...]:
        return (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)

    def get(self, atoms, need: tuple[str, ...] = ()) -> dict | None:
        """The stored results of ``atoms`` holding every name in ``need``, or None."""
        key = self._key(atoms)
        for k, (stored, results) in enumerate(self.items):
            if all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(key, stored)) \
                    and all(name in results for name in need):
                self.items.insert(0, self.items.pop(k))
                self.hits += 1
                return dict(results)
        return None

    def put(self, atoms, results: dict) -> None:
        """Store a copy of ``atoms``' key with ``results`` (most recent first)."""
        key = tuple(np.array(a, copy=True) for a in self._key(atoms))
        self.items.insert(0, (key, dict(results)))
        del self.items[self.size:]
