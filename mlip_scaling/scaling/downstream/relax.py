"""Relaxation errors of a model against its oracle (Matbench-Discovery-style protocol).

Each structure is relaxed twice, with the model and with the oracle: FIRE on a
FrechetCellFilter (positions and cell), fmax 0.05 eV/Å, at most 500 steps. Metrics:

* ``relax_energy_error``: mean |E_oracle(x_model) − E_oracle(x_oracle)| / N in eV/atom — the
  oracle's energy of the model's relaxed structure above the oracle's own minimum;
* ``relax_rmsd``: pymatgen StructureMatcher(stol=1.0, scale=False).get_rms_dist normalised
  RMSD between the two relaxed structures (unmatched counts 1.0);
* ``relax_failure_rate``: model relaxations not converged in ``max_steps`` or exploded;
* ``relax_steps``: mean optimiser steps of the model relaxations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

__all__ = ["relax", "relaxation_errors", "normalised_rmsd"]


def relax(atoms: Atoms, calc: Calculator, fmax: float = 0.05, max_steps: int = 500
          ) -> tuple[Atoms, int, bool]:
    """Relax a copy of ``atoms`` (cell too when periodic) -> (relaxed, steps, converged)."""
    work = atoms.copy()
    work.calc = calc
    target = FrechetCellFilter(work) if work.pbc.all() else work
    opt = FIRE(target, logfile=None)
    try:
        converged = bool(opt.run(fmax=fmax, steps=max_steps))
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        converged = False
    finite = np.isfinite(work.positions).all() and np.isfinite(work.cell.array).all()
    return work, int(opt.nsteps), converged and bool(finite)


def normalised_rmsd(a: Atoms, b: Atoms) -> float:
    """StructureMatcher(stol=1.0, scale=False) normalised RMSD; 1.0 when unmatched."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        match = StructureMatcher(stol=1.0, scale=False).get_rms_dist(
            AseAtomsAdaptor.get_structure(a), AseAtomsAdaptor.get_structure(b))
    except (ValueError, np.linalg.LinAlgError):
        return 1.0
    return 1.0 if match is None else float(match[0])


def relaxation_errors(structures: Sequence[Atoms], model: Calculator, oracle: Calculator,
                      fmax: float = 0.05, max_steps: int = 500) -> dict[str, float]:
    """Relaxation metrics (see module docstring) over periodic ``structures``."""
    e_err, rmsd, fails, steps = [], [], 0, []
    for atoms in structures:
        ref, _, _ = relax(atoms, oracle, fmax, max_steps)
        mine, n, ok = relax(atoms, model, fmax, max_steps)
        steps.append(n)
        if not ok:
            fails += 1
            rmsd.append(1.0)
            continue
        probe = mine.copy()
        probe.calc = oracle
        e_err.append(abs(probe.get_potential_energy() - ref.get_potential_energy()) / len(atoms))
        rmsd.append(normalised_rmsd(mine, ref))
    return {
        "relax_energy_error": float(np.mean(e_err)) if e_err else float("nan"),
        "relax_rmsd": float(np.mean(rmsd)) if rmsd else float("nan"),
        "relax_failure_rate": fails / max(len(structures), 1),
        "relax_steps": float(np.mean(steps)) if steps else float("nan"),
    }
