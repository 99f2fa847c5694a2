"""pymatgen structures in and out: an adaptor and a ``relax`` helper.

Usage::

    from mlip_scaling import ScalingCalculator, relax
    calc = ScalingCalculator("model.pt")
    calc.predict([structure1, structure2])       # pymatgen Structures, Molecules or Atoms
    result = relax(structure, calc, fmax=0.05)   # result["final_structure"]: a Structure
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

from mlip_scaling.errors import DataError

__all__ = ["as_atoms", "relax"]


def _pymatgen_kind(structure: object) -> str | None:
    """``"structure"``, ``"molecule"`` or None (not a pymatgen object; pymatgen is imported
    only when the object comes from it)."""
    if not type(structure).__module__.startswith("pymatgen"):
        return None
    from pymatgen.core import IMolecule, IStructure

    if isinstance(structure, IStructure):
        return "structure"
    return "molecule" if isinstance(structure, IMolecule) else None


def as_atoms(structure: Any, index: int | None = None) -> Atoms:
    """``structure`` as ASE ``Atoms``: Atoms are returned as they are; a pymatgen
    ``Structure`` (periodic) or ``Molecule`` (no cell) is converted (positions Å).
    ``index`` names the structure in the error for anything else."""
    if isinstance(structure, Atoms):
        return structure
    if _pymatgen_kind(structure) is None:
        where = "structure" if index is None else f"structure {index}"
        raise DataError(f"{where}: expected ase.Atoms or a pymatgen Structure/Molecule, got "
                        f"{type(structure).__module__}.{type(structure).__name__}")
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = None  # site properties may carry labels; they are not this model's results
    return atoms


def _like(atoms: Atoms, original: Any) -> Any:
    """``atoms`` in the type of ``original`` (Atoms, or a pymatgen Structure/Molecule)."""
    kind = _pymatgen_kind(original)
    if kind is None:
        return atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    plain = atoms.copy()
    plain.calc = None
    if kind == "molecule":
        return AseAtomsAdaptor.get_molecule(plain)
    return AseAtomsAdaptor.get_structure(plain)


def relax(structure: Any, calc: Calculator, fmax: float = 0.05, steps: int = 500,
          relax_cell: bool = True) -> dict[str, Any]:
    """Relax a copy of ``structure`` (Atoms or pymatgen Structure/Molecule) with FIRE, and
    the cell too (FrechetCellFilter) when ``relax_cell`` and periodic in all directions.

    Returns ``final_structure`` (same type as the input), ``energy`` (eV), ``forces``
    [N,3] (eV/Å), ``stress`` [6] (eV/Å^3, Voigt; periodic only), ``steps`` and
    ``converged`` (max force <= ``fmax`` eV/Å within ``steps``).
    """
    atoms = as_atoms(structure).copy()
    atoms.calc = calc
    periodic = bool(atoms.pbc.all())
    target = FrechetCellFilter(atoms) if relax_cell and periodic else atoms
    opt = FIRE(target, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    result = {
        "final_structure": _like(atoms, structure),
        "energy": float(atoms.get_potential_energy()),
        "forces": np.array(atoms.get_forces()),
        "steps": int(opt.nsteps),
        "converged": converged,
    }
    if periodic:
        result["stress"] = np.array(atoms.get_stress())
    return result
