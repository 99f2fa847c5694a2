"""Elastic constants of a model against its oracle (finite strains on the relaxed cell).

Each structure is relaxed by each calculator (FIRE + FrechetCellFilter, fmax
``FMAX`` eV/Å; the oracle's relaxation remembered per process under ``oracle_key``). Each
of the six Voigt strains (xx, yy, zz, yz, xz, xy; engineering shear, so the cell is
multiplied by I + ε with ε_yz = γ/2) is applied with ±``STRAIN``, the atoms relaxed in the
fixed strained cell (relaxed-ion constants; skipped for one atom), and
C_ij = (σ_i(+ε_j) − σ_i(−ε_j)) / 2ε with ASE's stress (positive = tensile), in GPa; the
tensor is symmetrised. The Voigt bulk modulus is
B = (C11 + C22 + C33 + 2(C12 + C13 + C23)) / 9.

Per structure: the mean |C_model − C_oracle| over the 21 independent components and
|B_model − B_oracle| (GPa). Over structures whose relaxations did not fail outright:
``elastic_mae``, ``bulk_modulus_error`` with their standard errors and
``elastic_structures`` (count). A model relaxation that did not converge in 500 steps is
used where it stopped; one that exploded or raised is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_strain
from ase.units import GPa

from mlip_scaling.scaling.downstream.relax import (
    CalcSpec,
    _build,
    _mean_se,
    oracle_relax,
    relax,
)

__all__ = ["elastic_tensor", "bulk_modulus", "elastic_pair", "elastic_errors", "STRAIN"]

STRAIN = 0.005  # finite strain (engineering)
FMAX = 0.005  # eV/Å: relaxations before and inside the strained cells
_UPPER = np.triu_indices(6)
_ORACLE_CACHE: dict[tuple, np.ndarray | None] = {}


def _stress_at(atoms: Atoms, calc, strain: np.ndarray) -> np.ndarray:
    """ASE Voigt stress [6] (eV/Å³) of ``atoms`` strained by Voigt ``strain`` [6], the
    atoms relaxed inside the fixed cell."""
    work = atoms.copy()
    deformation = voigt_6_to_full_3x3_strain(strain)  # I + ε (shear halved)
    work.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
    if len(work) > 1:
        work = relax(work, calc, FMAX, 200, fixed_cell=True).atoms
    work.calc = calc
    return work.get_stress(voigt=True)


def elastic_tensor(atoms: Atoms, calc, strain: float = STRAIN) -> np.ndarray:
    """Relaxed-ion elastic tensor [6,6] (GPa, Voigt order xx yy zz yz xz xy) of ``atoms``
    (taken as relaxed) by central differences of ``calc``'s stress."""
    c = np.zeros((6, 6))
    for j in range(6):
        e = np.zeros(6)
        e[j] = strain
        c[:, j] = (_stress_at(atoms, calc, e) - _stress_at(atoms, calc, -e)) / (2 * strain)
    return 0.5 * (c + c.T) / GPa


def bulk_modulus(c: np.ndarray) -> float:
    """Voigt bulk modulus (units of ``c``) of an elastic tensor [6,6]."""
    return float((c[0, 0] + c[1, 1] + c[2, 2] + 2 * (c[0, 1] + c[0, 2] + c[1, 2])) / 9)


def _relaxed_tensor(atoms: Atoms, calc) -> np.ndarray | None:
    result = relax(atoms, calc, FMAX, 500)
    if result.reason and not result.reason.startswith("not converged"):
        return None
    return elastic_tensor(result.atoms, calc)


def _oracle_tensor(atoms: Atoms, oracle: CalcSpec, key: str | None) -> np.ndarray | None:
    """The oracle's elastic tensor at its relaxed structure (None when that relaxation did
    not converge), remembered per process under ``key``."""
    ident = None if key is None else (key, atoms.numbers.tobytes(), atoms.positions.tobytes(),
                                      atoms.cell.array.tobytes())
    if ident is None or ident not in _ORACLE_CACHE:
        relaxed = oracle_relax(atoms, oracle, key, FMAX, 500, False)
        value = elastic_tensor(relaxed.atoms, _build(oracle)) if relaxed.converged else None
        if ident is None:
            return value
        _ORACLE_CACHE[ident] = value
    return _ORACLE_CACHE[ident]


def elastic_pair(atoms: Atoms, model: CalcSpec, oracle: CalcSpec,
                 oracle_key: str | None = None) -> dict[str, float] | None:
    """``{"mae": GPa, "bulk": GPa}`` of one structure; None when a relaxation failed
    outright (the oracle's not converging, the model's exploding or raising)."""
    ref = _oracle_tensor(atoms, oracle, oracle_key)
    if ref is None:
        return None
    mine = _relaxed_tensor(atoms, _build(model))
    if mine is None or not np.isfinite(mine).all():
        return None
    return {"mae": float(np.mean(np.abs(mine - ref)[_UPPER])),
            "bulk": abs(bulk_modulus(mine) - bulk_modulus(ref))}


def elastic_errors(structures: Sequence[Atoms], model: CalcSpec, oracle: CalcSpec,
                   oracle_key: str | None = None,
                   progress: bool = False) -> dict[str, float | None]:
    """``elastic_mae``, ``bulk_modulus_error`` (GPa) with standard errors and
    ``elastic_structures`` over ``structures`` (module docstring)."""
    from mlip_scaling.progress import track

    pairs = [elastic_pair(a, model, oracle, oracle_key)
             for a in track(structures, total=len(structures), desc="elastic",
                            enabled=progress, transient=True)]
    ok = [p for p in pairs if p is not None]
    return {**_mean_se([p["mae"] for p in ok], "elastic_mae"),
            **_mean_se([p["bulk"] for p in ok], "bulk_modulus_error"),
            "elastic_structures": len(ok)}
