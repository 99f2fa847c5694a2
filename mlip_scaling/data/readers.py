"""Read labelled structures: extxyz (anything ase.io reads), ASE db, aselmdb, our HDF5."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from ase import Atoms

from mlip_scaling.data.store import StructureStore, validate_labels
from mlip_scaling.errors import DataError

__all__ = ["read_structures", "open_dataset", "detect_format"]

_DB_SUFFIXES = {".db": "db", ".aselmdb": "aselmdb", ".lmdb": "aselmdb"}
_XYZ_SUFFIXES = {".xyz", ".extxyz"}


def detect_format(path: str | os.PathLike) -> str:
    """``'h5'``, ``'db'``, ``'aselmdb'`` or ``'ase'`` (ase.io) from the file name."""
    suffix = Path(path).suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return "h5"
    return _DB_SUFFIXES.get(suffix, "ase")


def _read_db(path: Path, kind: str) -> list[Atoms]:
    import ase.db

    if kind == "aselmdb":
        try:
            import ase_db_backends  # noqa: F401  (registers the aselmdb backend)
        except ImportError:
            raise DataError(f"{path}: reading aselmdb needs the ase-db-backends package") from None
    try:
        db = ase.db.connect(str(path), type=kind)
        return [row.toatoms(add_additional_information=False) for row in db.select()]
    except Exception as exc:  # backends raise many types for corrupt files
        raise DataError(f"{path}: cannot read as {kind} ({str(exc).splitlines()[0][:120]})") \
            from None


def check_xyz_counts(path: Path) -> None:
    """Each frame's atom-count line of an (ext)xyz file against the lines that follow it
    (ase.io's reader does not stop on a count larger than the file). One pass, no parsing
    of the atom lines; a line that is not a count is left to ase.io to report."""
    with open(path, "rb") as handle:
        frame = 0
        for line in handle:
            text = line.strip()
            if not text:
                continue
            try:
                count = int(text)
            except ValueError:
                return
            if count < 0:
                raise DataError(f"{path}: structure {frame} claims {count} atoms")
            present = sum(1 for _ in itertools.islice(handle, count + 1))
            if present < count + 1:
                raise DataError(f"{path}: structure {frame} claims {count:,} atoms but only "
                                f"{max(present - 1, 0):,} atom lines follow its comment line")
            frame += 1


def read_structures(path: str | os.PathLike, index: str = ":", validate: bool = True
                    ) -> list[Atoms]:
    """Labelled structures from a file; labels are checked when ``validate``.

    Raises DataError naming the file (and structure index) on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such dataset file")
    kind = detect_format(path)
    if kind == "h5":
        store = StructureStore(path)
        if validate:
            store.validate(content_hash=True)
        return [store.get_atoms(i) for i in range(len(store))]
    if kind in ("db", "aselmdb"):
        structures = _read_db(path, kind)
    else:
        import ase.io

        if path.suffix.lower() in _XYZ_SUFFIXES:
            check_xyz_counts(path)
        try:
            structures = ase.io.read(str(path), index=index)
        except Exception as exc:  # ase.io raises many types for unknown/corrupt formats
            raise DataError(f"{path}: cannot read structures ({str(exc).splitlines()[0][:120]})"
                            ) from None
        structures = structures if isinstance(structures, list) else [structures]
    if validate:
        for i, atoms in enumerate(structures):
            validate_labels(atoms, f"{path}: structure {i}")
    return structures


def open_dataset(path: str | os.PathLike) -> StructureStore | list[Atoms]:
    """An indexable dataset: a StructureStore for .h5, else the validated list of Atoms.

    A store's layout, values and content hash are checked on opening (~0.2 s for the
    10,000 structures of the embedded dataset); the geometry of each structure is checked
    when its neighbour list is built.
    """
    path = Path(path)
    if detect_format(path) == "h5":
        store = StructureStore(path)
        store.validate(content_hash=True)
        return store
    return read_structures(path)
