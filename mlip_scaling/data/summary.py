"""What a dataset file holds: counts, elements, sizes, label statistics, checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import atoms_labels
from mlip_scaling.data.readers import detect_format, read_structures
from mlip_scaling.data.store import StructureStore

__all__ = ["dataset_summary", "verified_text"]


def dataset_summary(path: str | Path, verify: bool = False) -> dict:
    """Counts, elements, sizes and label statistics of a dataset file.

    Stored values are always checked (elements, finiteness, offsets); with ``verify`` also
    a store's content hash and every structure's geometry (DataError on the first problem).
    """
    path = Path(path)
    if detect_format(path) == "h5":
        store = StructureStore(path)
        store.validate(content_hash=verify)
        if verify:
            store.check_geometry()
        numbers = store.array("numbers")
        energy, forces = store.array("energy"), store.array("forces")
        stress, has = store.array("stress"), store.has_stress
        sizes, meta = store.num_atoms, dict(store.metadata)
    else:
        structures = read_structures(path)
        labels = [atoms_labels(a) for a in structures]
        sizes = np.array([len(a) for a in structures])
        numbers = np.concatenate([a.numbers for a in structures])
        energy = np.array([float(lab[keys.ENERGY]) for lab in labels])
        forces = np.concatenate([lab[keys.FORCES] for lab in labels])
        has = np.array([keys.STRESS in lab for lab in labels])
        stress = np.array([lab.get(keys.STRESS, np.zeros((3, 3))) for lab in labels])
        meta = {}
    from ase.data import chemical_symbols

    per_atom = energy / sizes
    fnorm = np.linalg.norm(forces, axis=1)
    return {
        "file": str(path), "structures": int(len(sizes)), "atoms": int(sizes.sum()),
        "atoms_per_structure": [int(sizes.min()), float(sizes.mean()), int(sizes.max())],
        "elements": {chemical_symbols[z]: int(c) for z, c in zip(*np.unique(numbers,
                                                                          return_counts=True))},
        "energy_per_atom_eV": [float(per_atom.min()), float(per_atom.mean()),
                               float(per_atom.max()), float(per_atom.std())],
        "force_norm_eV_per_A": [float(fnorm.min()), float(fnorm.mean()), float(fnorm.max()),
                                float(np.sqrt((forces**2).mean()))],
        "with_stress": int(has.sum()),
        "stress_abs_mean_eV_per_A3": float(np.abs(stress[has]).mean()) if has.any() else None,
        "metadata": meta,
    }


def verified_text(summary: dict, seconds: float) -> str:
    """What ``info --verify`` checked (every check passed, or it would have stopped)."""
    checks = "elements, finite values, cells, overlapping atoms"
    if detect_format(summary["file"]) == "h5":
        checks = "offsets, " + checks + (", content hash" if "content_hash" in
                                          summary["metadata"] else " (no content hash recorded)")
    return f"ok: {checks} of {summary['structures']:,} structures ({seconds:.1f} s)"
