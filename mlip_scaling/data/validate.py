"""Checks of datasets: layout of a store, values, content hash, and each structure's geometry.

Every check raises a one-line :class:`~mlip_scaling.errors.DataError` naming the file and
the first bad structure (its index), so that bad data stops a command before it turns into
an IndexError, a NaN loss or a crash of the neighbour-list library.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mlip_scaling.data.atomic_data import check_elements
from mlip_scaling.data.neighbors import MAX_SPAN_CUTOFFS, neighbor_list
from mlip_scaling.errors import DataError

__all__ = ["check_layout", "check_values", "check_structure", "probe_cutoff"]


def check_layout(where: str, offsets: np.ndarray, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Offsets [S+1] and the shapes of the stored arrays agree (cheap: no array is read).

    ``shapes`` maps the store's array names to their shapes; ``where`` names the file.
    """
    n_struct = len(offsets) - 1
    if offsets.ndim != 1 or n_struct < 1:
        raise DataError(f"{where}: offsets have shape {offsets.shape}: no structures")
    if offsets[0] != 0:
        raise DataError(f"{where}: offsets start at {int(offsets[0])}, not 0 (corrupt store)")
    sizes = np.diff(offsets)
    if (sizes < 1).any():
        s = int(np.flatnonzero(sizes < 1)[0])
        raise DataError(f"{where}: structure {s} has {int(sizes[s])} atoms according to the "
                        "offsets (inconsistent offsets: corrupt store)")
    n_atoms = int(offsets[-1])
    expected = {"numbers": (n_atoms,), "positions": (n_atoms, 3), "forces": (n_atoms, 3),
                "cell": (n_struct, 3, 3), "pbc": (n_struct, 3), "energy": (n_struct,),
                "stress": (n_struct, 3, 3), "has_stress": (n_struct,)}
    for name, shape in expected.items():
        if tuple(shapes[name]) != shape:
            raise DataError(f"{where}: array {name!r} has shape {tuple(shapes[name])} but the "
                            f"offsets describe {n_struct} structures of {n_atoms} atoms in all "
                            f"(expected {shape}: inconsistent store)")


def check_values(arrays: Mapping[str, np.ndarray], offsets: np.ndarray, where: str) -> None:
    """Atomic numbers of elements and finite positions, forces, cells, energies and (where
    present) stresses of a store's arrays; errors name the first bad structure."""

    def structure_of(atom: int) -> int:
        return int(np.searchsorted(offsets, atom, side="right") - 1)

    check_elements(arrays["numbers"], lambda atom: f"{where}: structure {structure_of(atom)}")
    for name in ("positions", "forces"):
        finite = np.isfinite(arrays[name]).all(axis=1)
        if not finite.all():
            atom = int(np.flatnonzero(~finite)[0])
            s = structure_of(atom)
            raise DataError(f"{where}: structure {s}: {name} of atom {atom - int(offsets[s])} "
                            "are not finite (NaN or inf)")
    stress = np.where(arrays["has_stress"][:, None, None], arrays["stress"], 0.0)
    for name, values in (("cell", arrays["cell"]), ("energy", arrays["energy"]),
                         ("stress", stress)):
        finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if not finite.all():
            s = int(np.flatnonzero(~finite)[0])
            raise DataError(f"{where}: structure {s}: {name} is not finite (NaN or inf)")


def probe_cutoff(positions: np.ndarray) -> float:
    """A neighbour-list cutoff (Å) for finding overlapping atoms: 1 Å, larger for structures
    so wide that a 1 Å list would exceed the span limit of the neighbour list."""
    if len(positions) < 2:
        return 1.0
    diameter = float(np.sqrt(3.0) * np.ptp(positions, axis=0).max())
    return max(1.0, 1.01 * diameter / MAX_SPAN_CUTOFFS)


def check_structure(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray,
                    pbc: np.ndarray, where: str) -> None:
    """One structure is sound: elements, finite coordinates, cell heights, no overlapping
    atoms (see :func:`mlip_scaling.data.neighbors.check_geometry`)."""
    check_elements(np.asarray(numbers), lambda atom: where)
    positions = np.asarray(positions, dtype=np.float64)
    if not np.isfinite(positions).all():  # before probe_cutoff, which needs finite values
        atom = int(np.flatnonzero(~np.isfinite(positions).all(axis=1))[0])
        raise DataError(f"{where}: position of atom {atom} is not finite (NaN or inf)")
    neighbor_list(positions, cell, pbc, probe_cutoff(positions), where)
