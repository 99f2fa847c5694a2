"""Conversion between dataset formats: the HDF5 store and anything ase.io writes."""

from __future__ import annotations

from pathlib import Path

from mlip_scaling.data.readers import detect_format, read_structures
from mlip_scaling.data.store import write_store
from mlip_scaling.errors import DataError

__all__ = ["convert_dataset"]


def convert_dataset(src: Path, out: Path, fmt: str | None = None, oracle: str | None = None,
                    force: bool = False) -> int:
    """Write the structures of ``src`` to ``out`` (a store when it ends in ``.h5``, else the
    ase.io format ``fmt`` or the one its name implies); returns how many were written."""
    if out.exists() and not force:
        raise DataError(f"{out}: exists (pass --force to overwrite)")
    structures = read_structures(src)
    if detect_format(out) == "h5":
        write_store(out, structures, {"name": out.stem, "source": str(src), "oracle": oracle})
    else:
        _write_ase(out, structures, fmt or _format_of(out))
    return len(structures)


def _format_of(path: Path) -> str:
    """The ase.io format that the name ``path`` implies (``.cif``, ``POSCAR``, ...);
    extxyz when the name implies none."""
    from ase.io.formats import filetype, ioformats

    try:
        fmt = filetype(str(path), read=False)
    except Exception:  # ase raises several types for names it cannot place
        return "extxyz"
    return fmt if fmt in ioformats and ioformats[fmt].can_write else "extxyz"


def _write_ase(out: Path, structures: list, fmt: str) -> None:
    """Write ``structures`` with ase.io as ``fmt`` (DataError naming ``out`` on refusal,
    e.g. a one-structure format such as POSCAR given several)."""
    import ase.io
    from ase.io.formats import UnknownFileTypeError

    from mlip_scaling.io_utils import atomic_path

    try:
        with atomic_path(out) as tmp:
            ase.io.write(str(tmp), structures, format=fmt)
    except (ValueError, TypeError, KeyError, NotImplementedError,
            UnknownFileTypeError) as exc:
        message = ("no such ase.io format" if isinstance(exc, UnknownFileTypeError)
                   else str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__)
        raise DataError(f"{out}: cannot write {len(structures)} structures as {fmt} "
                        f"({message})") from None
