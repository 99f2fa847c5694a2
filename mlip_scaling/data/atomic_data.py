"""Structures as plain dicts of tensors, and batching (see :mod:`mlip_scaling.keys`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

from mlip_scaling import keys

AtomicData = dict[str, torch.Tensor]

__all__ = [
    "AtomicData",
    "from_atoms",
    "to_atoms",
    "atoms_labels",
    "collate",
    "compute_edge_vectors",
    "to_device",
]


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


def from_atoms(
    atoms: Atoms, labels: bool = True, dtype: torch.dtype = torch.float64
) -> AtomicData:
    """Convert one ``ase.Atoms`` into a data dict (labels included when present)."""
    data: AtomicData = {
        keys.POSITIONS: torch.tensor(atoms.get_positions(), dtype=dtype),
        keys.ATOMIC_NUMBERS: torch.tensor(atoms.get_atomic_numbers(), dtype=torch.long),
        keys.CELL: torch.tensor(np.asarray(atoms.get_cell()), dtype=dtype).reshape(1, 3, 3),
        keys.PBC: torch.tensor(atoms.get_pbc(), dtype=torch.bool).reshape(1, 3),
        keys.NUM_ATOMS: torch.tensor([len(atoms)], dtype=torch.long),
    }
    if labels:
        found = atoms_labels(atoms)
        if keys.ENERGY in found:
            data[keys.ENERGY] = torch.tensor(found[keys.ENERGY], dtype=dtype).reshape(1)
        if keys.FORCES in found:
            data[keys.FORCES] = torch.tensor(found[keys.FORCES], dtype=dtype).reshape(-1, 3)
        if keys.STRESS in found:
            data[keys.STRESS] = torch.tensor(found[keys.STRESS], dtype=dtype).reshape(1, 3, 3)
    return data


def to_atoms(data: AtomicData) -> Atoms:
    """Convert a single-structure data dict back to ``ase.Atoms`` (labels as results)."""
    atoms = Atoms(
        numbers=data[keys.ATOMIC_NUMBERS].cpu().numpy(),
        positions=data[keys.POSITIONS].detach().cpu().numpy(),
        cell=data[keys.CELL].reshape(3, 3).detach().cpu().numpy(),
        pbc=data[keys.PBC].reshape(3).cpu().numpy(),
    )
    results = {}
    if keys.ENERGY in data:
        results["energy"] = float(data[keys.ENERGY].reshape(()))
    if keys.FORCES in data:
        results["forces"] = data[keys.FORCES].detach().cpu().numpy()
    if keys.STRESS in data:
        full = data[keys.STRESS].reshape(3, 3).detach().cpu().numpy()
        results["stress"] = full_3x3_to_voigt_6_stress(full)
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def collate(structures: Sequence[AtomicData]) -> AtomicData:
    """Concatenate structures into one batch with ``batch`` index and offset edges.

    Fields must be present in every structure or in none (labels included).
    """
    if len(structures) == 0:
        raise ValueError("cannot collate an empty list of structures")
    first = structures[0]
    batch: AtomicData = {}
    for name in first:
        if name == keys.EDGE_INDEX:
            continue
        missing = [k for k, s in enumerate(structures) if name not in s]
        if missing:
            raise KeyError(f"field {name!r} is missing from structure {missing[0]} of the batch")
        batch[name] = torch.cat([s[name] for s in structures], dim=0)
    counts = torch.tensor([len(s[keys.ATOMIC_NUMBERS]) for s in structures], dtype=torch.long)
    batch[keys.NUM_ATOMS] = counts
    batch[keys.BATCH] = torch.repeat_interleave(torch.arange(len(structures)), counts)
    if keys.EDGE_INDEX in first:
        offsets = torch.cumsum(counts, 0) - counts
        batch[keys.EDGE_INDEX] = torch.cat(
            [s[keys.EDGE_INDEX] + off for s, off in zip(structures, offsets)], dim=1
        )
    return batch


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
