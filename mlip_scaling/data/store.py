"""The project's HDF5 dataset store: concatenated arrays + offsets, atomic writes.

Layout of a store file (all datasets gzip-compressed, chunked)::

    numbers   [A]      int8/uint8   atomic numbers of all atoms, concatenated
    positions [A, 3]   float64      Å
    forces    [A, 3]   float64      eV/Å
    offsets   [S + 1]  int64        atoms of structure s are offsets[s]:offsets[s+1]
    cell      [S, 3, 3] float64     Å
    pbc       [S, 3]   bool
    energy    [S]      float64      eV
    stress    [S, 3, 3] float64     eV/Å^3 (zeros where has_stress is false)
    has_stress [S]     bool
    attrs["metadata"]  JSON: oracle, recipe, name, content_hash, n_structures, created, ...
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import AtomicData, atoms_labels, from_arrays
from mlip_scaling.data.validate import check_layout, check_structure, check_values
from mlip_scaling.errors import DataError
from mlip_scaling.io_utils import atomic_path

__all__ = ["StructureStore", "write_store", "merge_stores", "validate_labels"]

_PER_ATOM = ("numbers", "positions", "forces")
_PER_STRUCT = ("cell", "pbc", "energy", "stress", "has_stress")


def validate_labels(atoms: Atoms, where: str) -> dict[str, np.ndarray]:
    """Labels of ``atoms`` checked for presence, shape and finiteness, and the structure
    for elements, finite coordinates, cell and overlapping atoms (DataError if bad)."""
    labels = atoms_labels(atoms)
    n = len(atoms)
    if n == 0:
        raise DataError(f"{where}: structure has no atoms")
    if keys.ENERGY not in labels or keys.FORCES not in labels:
        missing = [k for k in (keys.ENERGY, keys.FORCES) if k not in labels]
        raise DataError(f"{where}: missing label(s) {', '.join(missing)}")
    if labels[keys.FORCES].shape != (n, 3):
        raise DataError(
            f"{where}: forces have shape {labels[keys.FORCES].shape}, expected ({n}, 3)"
        )
    for name, value in labels.items():
        if not np.all(np.isfinite(value)):
            raise DataError(f"{where}: {name} contains NaN or inf")
    check_structure(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, where)
    return labels


def _structure_arrays(atoms: Atoms, where: str) -> dict[str, np.ndarray]:
    labels = validate_labels(atoms, where)
    stress = labels.get(keys.STRESS)
    return {
        "numbers": atoms.numbers.astype(np.uint8),
        "positions": atoms.positions.astype(np.float64),
        "forces": labels[keys.FORCES].astype(np.float64),
        "cell": np.asarray(atoms.cell, dtype=np.float64).reshape(1, 3, 3),
        "pbc": atoms.pbc.reshape(1, 3).astype(bool),
        "energy": np.asarray(labels[keys.ENERGY], dtype=np.float64).reshape(1),
        "stress": (np.zeros((1, 3, 3)) if stress is None else stress.reshape(1, 3, 3)),
        "has_stress": np.array([stress is not None]),
    }


def _content_hash(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in (*_PER_ATOM, "offsets", *_PER_STRUCT):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def _write_arrays(path: Path, arrays: dict[str, np.ndarray], metadata: dict | None) -> Path:
    meta = dict(metadata or {})
    meta["n_structures"] = int(len(arrays["energy"]))
    meta["content_hash"] = _content_hash(arrays)
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            for name, value in arrays.items():
                chunks = True if len(value) else None
                fh.create_dataset(name, data=value, compression="gzip", compression_opts=4,
                                  shuffle=True, chunks=chunks)
            fh.attrs["metadata"] = json.dumps(meta)
            fh.attrs["format"] = "mlip-scaling-store/1"
    return Path(path)


def write_store(
    path: str | os.PathLike, structures: Iterable[Atoms], metadata: dict | None = None
) -> Path:
    """Write labelled structures to an HDF5 store atomically; DataError names a bad index."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*_PER_ATOM, *_PER_STRUCT)}
    counts = []
    for index, atoms in enumerate(structures):
        arrays = _structure_arrays(atoms, f"{path}: structure {index}")
        for name, value in arrays.items():
            parts[name].append(value)
        counts.append(len(atoms))
    if not counts:
        raise DataError(f"{path}: no structures to write")
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    arrays["offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return _write_arrays(Path(path), arrays, metadata)


def merge_stores(
    inputs: Sequence[str | os.PathLike], out: str | os.PathLike, metadata: dict | None = None
) -> Path:
    """Concatenate stores in order into ``out`` (metadata of the first, updated)."""
    if not inputs:
        raise DataError(f"{out}: no input stores to merge")
    stores = [StructureStore(p) for p in inputs]
    arrays = {name: np.concatenate([s.array(name) for s in stores]) for name in
              (*_PER_ATOM, *_PER_STRUCT)}
    counts = np.concatenate([np.diff(s.array("offsets")) for s in stores])
    arrays["offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    meta = {k: v for k, v in stores[0].metadata.items() if k not in ("content_hash", "created")}
    meta.update(metadata or {})
    return _write_arrays(Path(out), arrays, meta)


class StructureStore:
    """Random access to a store file; arrays are read into memory on first use.

    Safe in DataLoader worker processes: nothing is held open between reads.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such dataset file")
        try:
            with h5py.File(self.path, "r") as fh:
                self.metadata: dict = json.loads(fh.attrs["metadata"])
                self._offsets = fh["offsets"][()]
                self.has_stress: np.ndarray = fh["has_stress"][()]
                missing = [k for k in (*_PER_ATOM, *_PER_STRUCT) if k not in fh]
                shapes = {k: fh[k].shape for k in (*_PER_ATOM, *_PER_STRUCT) if k in fh}
        except (OSError, KeyError, ValueError, RecursionError) as exc:
            raise DataError(
                f"{self.path}: not a readable dataset store (truncated or corrupt: "
                f"{str(exc).splitlines()[0][:100]})"
            ) from None
        if missing:
            raise DataError(f"{self.path}: store lacks arrays {', '.join(missing)}")
        check_layout(str(self.path), self._offsets, shapes)
        self.num_atoms: np.ndarray = np.diff(self._offsets)
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str) -> np.ndarray:
        """A whole stored array (cached in memory)."""
        if name == "offsets":
            return self._offsets
        if name not in self._arrays:
            try:
                with h5py.File(self.path, "r") as fh:
                    self._arrays[name] = fh[name][()]
            except OSError as exc:
                raise DataError(f"{self.path}: cannot read array {name!r} "
                                f"(corrupt file: {str(exc)[:100]})") from None
        return self._arrays[name]

    def __len__(self) -> int:
        return len(self.num_atoms)

    def validate(self, content_hash: bool = False) -> None:
        """Check every stored value (elements, finiteness), reading all arrays; with
        ``content_hash`` also that the data hash to the recorded ``content_hash``."""
        arrays = {name: self.array(name) for name in (*_PER_ATOM, *_PER_STRUCT)}
        check_values(arrays, self._offsets, str(self.path))
        recorded = self.metadata.get("content_hash")
        if content_hash and recorded is not None:
            actual = _content_hash({**arrays, "offsets": self._offsets})
            if actual != recorded:
                raise DataError(f"{self.path}: content hash mismatch (recorded "
                                f"{str(recorded)[:12]}…, data hash to {actual[:12]}…): the "
                                "file was modified or corrupted after it was written")

    def check_geometry(self) -> None:
        """Check each structure's geometry (cell, overlapping atoms): ~0.1 ms a structure."""
        numbers, positions = self.array("numbers"), self.array("positions")
        cell, pbc = self.array("cell"), self.array("pbc")
        for i in range(len(self)):
            sl = self._slice(i)
            check_structure(numbers[sl], positions[sl], cell[i], pbc[i],
                            f"{self.path}: structure {i}")

    @property
    def species(self) -> list[int]:
        """Sorted atomic numbers present in the store."""
        return sorted(int(z) for z in np.unique(self.array("numbers")))

    def _slice(self, index: int) -> slice:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.path}: structure {index} out of range ({len(self)})")
        index %= len(self)
        return slice(int(self._offsets[index]), int(self._offsets[index + 1]))

    def __getitem__(self, index: int) -> AtomicData:
        """Structure ``index`` as a data dict (float64, labels included)."""
        sl, i = self._slice(index), int(index) % len(self)
        labels = {keys.ENERGY: self.array("energy")[i], keys.FORCES: self.array("forces")[sl]}
        if self.has_stress[i]:
            labels[keys.STRESS] = self.array("stress")[i]
        return from_arrays(self.array("numbers")[sl], self.array("positions")[sl],
                           self.array("cell")[i], self.array("pbc")[i], labels)

    def get_atoms(self, index: int) -> Atoms:
        """Structure ``index`` as ``ase.Atoms`` with its labels on a SinglePointCalculator."""
        sl, i = self._slice(index), int(index) % len(self)
        atoms = Atoms(
            numbers=self.array("numbers")[sl].astype(int),
            positions=self.array("positions")[sl],
            cell=self.array("cell")[i],
            pbc=self.array("pbc")[i],
        )
        results = {"energy": float(self.array("energy")[i]),
                   "forces": self.array("forces")[sl].copy()}
        if self.has_stress[i]:
            results["stress"] = full_3x3_to_voigt_6_stress(self.array("stress")[i])
        atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    def __repr__(self) -> str:
        return f"StructureStore({str(self.path)!r}, n_structures={len(self)})"
