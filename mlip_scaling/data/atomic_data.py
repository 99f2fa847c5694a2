"""Structures as plain dicts of tensors, and batching (see :mod:`mlip_scaling.keys`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import accumulate

import numpy as np
import torch
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress

from mlip_scaling import keys
from mlip_scaling.errors import DataError

AtomicData = dict[str, torch.Tensor]

#: Largest atomic number of a known element (oganesson).
MAX_ATOMIC_NUMBER = 118
#: Fields :func:`collate` builds for the batch instead of concatenating.
_REBUILT = (keys.EDGE_INDEX, keys.BATCH, keys.NUM_ATOMS)
#: Shapes of the label fields in a single-structure data dict.
_LABEL_SHAPES = {keys.ENERGY: (1,), keys.FORCES: (-1, 3), keys.STRESS: (1, 3, 3)}
_NUMPY_FLOATS = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}

__all__ = [
    "AtomicData",
    "MAX_ATOMIC_NUMBER",
    "IdentityCache",
    "check_elements",
    "identity_tensors",
    "from_arrays",
    "from_atoms",
    "atoms_labels",
    "collate",
    "compute_edge_vectors",
    "to_device",
]


def check_elements(
    numbers: np.ndarray | Sequence[int], where: Callable[[int], str],
    limit: int = MAX_ATOMIC_NUMBER,
) -> None:
    """Raise :class:`DataError` when an atomic number in ``numbers`` [A] is not in
    ``1..limit`` (default: the known elements); ``where(atom)`` names the bad atom's owner."""
    numbers = np.asarray(numbers)
    bad = (numbers < 1) | (numbers > limit)
    if bad.any():
        atom = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where(atom)}: atomic number {numbers[atom]} is not an element in "
                        f"1..{limit}")


def atoms_labels(atoms: Atoms) -> dict[str, np.ndarray]:
    """Energy (eV), forces [N,3] (eV/Å) and stress [3,3] (eV/Å^3) present on ``atoms``.

    Looks at the attached calculator's stored results first, then ``atoms.info`` /
    ``atoms.arrays`` (``energy``, ``forces``, ``stress``); absent labels are omitted.
    """
    found: dict[str, np.ndarray] = {}
    results = dict(getattr(atoms.calc, "results", {}) or {})
    sources = [results, atoms.info, atoms.arrays]
    for name in (keys.ENERGY, keys.FORCES, keys.STRESS):
        for src in sources:
            if name in src and src[name] is not None:
                found[name] = np.asarray(src[name], dtype=np.float64)
                break
    if keys.ENERGY not in found and "free_energy" in results:
        found[keys.ENERGY] = np.asarray(results["free_energy"], dtype=np.float64)
    if keys.STRESS in found and found[keys.STRESS].shape == (6,):
        found[keys.STRESS] = voigt_6_to_full_3x3_stress(found[keys.STRESS])
    return found


def _identity_arrays(numbers: np.ndarray, pbc: np.ndarray) -> dict[str, np.ndarray]:
    return {keys.ATOMIC_NUMBERS: np.array(numbers, np.int64),
            keys.PBC: np.array(pbc, np.bool_).reshape(1, 3),
            keys.NUM_ATOMS: np.array([len(numbers)], np.int64)}


def identity_tensors(
    numbers: np.ndarray, pbc: np.ndarray, device: torch.device | str = "cpu"
) -> AtomicData:
    """The tensors that depend only on which atoms a structure holds: ``atomic_numbers`` [N]
    (long), ``pbc`` [1,3] (bool) and ``num_atoms`` [1], on ``device``."""
    return {name: torch.from_numpy(value).to(device)
            for name, value in _identity_arrays(numbers, pbc).items()}


class IdentityCache:
    """:func:`identity_tensors` plus the ``batch`` index [N] (zeros) of one structure on
    ``device``, kept from call to call while the atomic numbers and pbc are unchanged (an
    MD run or a relaxation converts the same atoms at every step)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._key: tuple[np.ndarray, np.ndarray] | None = None
        self._tensors: AtomicData = {}

    def __call__(self, numbers: np.ndarray, pbc: np.ndarray) -> AtomicData:
        key = self._key
        if key is None or not (np.array_equal(key[0], numbers) and np.array_equal(key[1], pbc)):
            self._tensors = identity_tensors(numbers, pbc, self.device)
            self._tensors[keys.BATCH] = torch.zeros(len(numbers), dtype=torch.long,
                                                    device=self.device)
            self._key = (np.array(numbers, copy=True), np.array(pbc, copy=True))
        return dict(self._tensors)


def from_arrays(
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    labels: Mapping[str, np.ndarray] | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    edges: tuple[np.ndarray, np.ndarray] | None = None,
    identity: AtomicData | None = None,
) -> AtomicData:
    """One structure's arrays as a data dict, float fields in ``dtype`` on ``device``.

    Args:
        numbers: atomic numbers [N]; positions [N,3] (Å); cell [3,3] (Å); pbc [3].
        labels: ``energy`` (eV), ``forces`` [N,3] (eV/Å), ``stress`` [3,3] (eV/Å^3), each
            optional (see :func:`atoms_labels`).
        edges: a neighbour list of the structure, ``(edge_index [2,E], shifts [E,3])``.
        identity: tensors of these same atoms from :class:`IdentityCache` (or
            :func:`identity_tensors`), used instead of building them again.
    """
    # copies made in numpy and taken over by torch.from_numpy: a third of the cost of
    # torch.tensor for small arrays (this is the data-loading and calculator hot path)
    real = _NUMPY_FLOATS.get(dtype, np.float64)
    arrays = {keys.POSITIONS: np.array(positions, real),
              keys.CELL: np.array(cell, real).reshape(1, 3, 3),
              **(_identity_arrays(numbers, pbc) if identity is None else {})}
    for name, value in (labels or {}).items():
        arrays[name] = np.array(value, real).reshape(_LABEL_SHAPES[name])
    data = {name: torch.from_numpy(value) for name, value in arrays.items()}
    if torch.device(device).type != "cpu" or dtype not in _NUMPY_FLOATS:
        data = to_device(data, device, dtype)
    data.update(identity or {})
    if edges is not None:  # shared with the lists where type and device allow (read-only)
        data[keys.EDGE_INDEX] = torch.as_tensor(edges[0], dtype=torch.long, device=device)
        data[keys.EDGE_CELL_SHIFT] = torch.as_tensor(edges[1], dtype=dtype, device=device)
    return data


def from_atoms(
    atoms: Atoms,
    labels: bool = True,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    edges: tuple[np.ndarray, np.ndarray] | None = None,
    identity: AtomicData | None = None,
) -> AtomicData:
    """Convert one ``ase.Atoms`` into a data dict (see :func:`from_arrays`); with ``labels``
    the labels present on ``atoms`` are added (see :func:`atoms_labels`)."""
    return from_arrays(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc,
                       atoms_labels(atoms) if labels else None, dtype, device, edges, identity)


def collate(
    structures: Sequence[AtomicData], device: torch.device | str | None = None
) -> AtomicData:
    """Concatenate structures into one batch: ``batch`` index [N], ``num_atoms`` [B] and
    edge indices offset by the atoms before them.

    The batch is built where the structures are and moved to ``device`` when given (one
    copy per field). Fields must be present in every structure or in none (labels
    included); each structure's own ``batch`` and ``num_atoms`` are ignored.
    """
    if len(structures) == 0:
        raise ValueError("cannot collate an empty list of structures")
    first = structures[0]
    batch: AtomicData = {}
    for name in first:
        if name in _REBUILT:
            continue
        missing = [k for k, s in enumerate(structures) if name not in s]
        if missing:
            raise KeyError(f"field {name!r} is missing from structure {missing[0]} of the batch")
        batch[name] = torch.cat([s[name] for s in structures], dim=0)
    counts = [len(s[keys.ATOMIC_NUMBERS]) for s in structures]
    here = first[keys.ATOMIC_NUMBERS].device
    batch[keys.NUM_ATOMS] = torch.tensor(counts, dtype=torch.long, device=here)
    batch[keys.BATCH] = torch.repeat_interleave(
        torch.arange(len(structures), device=here), batch[keys.NUM_ATOMS],
        output_size=sum(counts),
    )
    if keys.EDGE_INDEX in first:
        offsets = accumulate(counts[:-1], initial=0)
        batch[keys.EDGE_INDEX] = torch.cat(
            [s[keys.EDGE_INDEX] + offset for s, offset in zip(structures, offsets)], dim=1
        )
    return batch if device is None else to_device(batch, device)


def compute_edge_vectors(data: AtomicData) -> AtomicData:
    """Add ``edge_vectors`` [E,3] and ``edge_lengths`` [E] computed in torch.

    Gradients flow to ``positions`` and ``cell``; the cell of each edge is the cell
    of its centre atom's structure.
    """
    pos = data[keys.POSITIONS]
    i, j = data[keys.EDGE_INDEX]
    batch = data.get(keys.BATCH)
    if batch is None:
        batch = torch.zeros(len(pos), dtype=torch.long, device=pos.device)
    cell = data[keys.CELL].to(pos.dtype)
    shift = data[keys.EDGE_CELL_SHIFT].to(pos.dtype)
    offset = torch.einsum("ek,ekl->el", shift, cell[batch[i]])
    vec = pos[j] - pos[i] + offset
    out = dict(data)
    out[keys.EDGE_VECTORS] = vec
    out[keys.EDGE_LENGTHS] = torch.linalg.norm(vec, dim=-1)
    return out


def to_device(
    data: AtomicData, device: torch.device | str, dtype: torch.dtype | None = None
) -> AtomicData:
    """Move every tensor to ``device``; float fields are cast to ``dtype`` when given."""
    out = {}
    for name, value in data.items():
        if dtype is not None and value.is_floating_point():
            out[name] = value.to(device=device, dtype=dtype)
        else:
            out[name] = value.to(device=device)
    return out
