"""Relaxation errors of a model against its oracle (Matbench-Discovery-style protocol).

Each structure is relaxed twice from the same start, with the model and with the oracle:
FIRE on a FrechetCellFilter (positions and cell; positions only for non-periodic structures
or ``fixed_cell=True``), fmax 0.05 eV/Å, at most 500 steps. Metrics over the structures
whose oracle relaxation converged (the reference; others are counted in
``relax_oracle_failures``), each mean with its standard error (``<name>_se``):

* ``relax_failure_rate``: fraction of model relaxations that failed: not converged in
  ``max_steps``, exploded (non-finite values, or two atoms closer than 0.5 Å) or raised;
* ``relax_energy_error``: mean |E_model(x_model)/N − E_oracle(x_oracle)/N| in eV/atom over
  ALL structures, a failed model relaxation counting ``FAILED_ENERGY_ERROR`` (1 eV/atom);
  ``relax_energy_error_converged`` is the mean over the converged ones only;
* ``relax_rmsd``: mean normalised RMSD between the two relaxed copies (see
  :func:`normalised_rmsd`: same atom order, minimum image, mean shift removed, divided by
  (V/N)^(1/3) as pymatgen normalises); a failed relaxation counts ``FAILED_RMSD`` (1.0);
* ``relax_steps``: mean optimiser steps of the model relaxations;
* ``relax_adwt`` (fixed cell only): OC20 average distance within threshold, the mean over
  thresholds 0.01–0.5 Å of the fraction of systems whose mean minimum-image displacement
  (mean shift removed) between the two relaxed structures is below the threshold; a failed
  relaxation is never within a threshold.

Calculators are given as instances or as zero-argument picklable factories (e.g.
``functools.partial(get_oracle, "emt")``); factories let ``jobs > 1`` relax structures in
parallel processes. With an ``oracle_key`` (e.g. the oracle's name) the oracle's relaxations
are kept in memory per process, so evaluating several models relaxes each start only once.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

from mlip_scaling.procs import worker_pool

__all__ = ["RelaxResult", "relax", "oracle_relax", "normalised_rmsd", "adwt", "relax_pair",
           "summarise", "relaxation_errors", "too_close", "CalcSpec", "FAILED_ENERGY_ERROR",
           "FAILED_RMSD"]

CalcSpec = Calculator | Callable[[], Calculator]
MIN_DISTANCE = 0.5  # Å: closer atoms mean the relaxation exploded
ADWT_THRESHOLDS = np.linspace(0.01, 0.5, 50)  # Å
FAILED_ENERGY_ERROR = 1.0  # eV/atom: relaxed-energy error of a failed model relaxation
FAILED_RMSD = 1.0  # normalised RMSD of a failed model relaxation
_ORACLE_CACHE: dict[tuple, RelaxResult] = {}
_RELAX_ERRORS = (ValueError, ArithmeticError, RuntimeError, np.linalg.LinAlgError)


@dataclass
class RelaxResult:
    """One relaxation: final structure, energy (eV), optimiser steps, convergence and, when
    it failed, why."""

    atoms: Atoms
    energy: float
    steps: int
    converged: bool
    reason: str | None = None


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """One BLAS thread while relaxing: the 3x3 cell algebra of FrechetCellFilter is slowed
    by orders of magnitude by threaded BLAS on a busy machine (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _build(spec: CalcSpec) -> Calculator:
    return spec if isinstance(spec, Calculator) else spec()


def _sane(atoms: Atoms, energy: float) -> bool:
    if not (np.isfinite(energy) and np.isfinite(atoms.positions).all()
            and np.isfinite(atoms.cell.array).all()):
        return False
    return not too_close(atoms, MIN_DISTANCE)


def too_close(atoms: Atoms, distance: float) -> bool:
    """Whether two atoms (or an atom and a periodic image) are closer than ``distance`` Å."""
    from mlip_scaling.data.neighbors import neighbor_list

    edges, _ = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, distance)
    return edges.shape[1] > 0


def relax(atoms: Atoms, calc: Calculator, fmax: float = 0.05, max_steps: int = 500,
          fixed_cell: bool = False) -> RelaxResult:
    """Relax a copy of ``atoms`` with FIRE (+ FrechetCellFilter when periodic, cell free).

    A calculator error, a blow-up or no convergence within ``max_steps`` gives
    ``converged=False`` with the ``reason``; nothing is raised.
    """
    work = atoms.copy()
    work.calc = calc
    target = work if fixed_cell or not work.pbc.all() else FrechetCellFilter(work)
    opt = FIRE(target, logfile=None)
    reason = None
    try:
        with single_blas_thread(), warnings.catch_warnings():
            # FrechetCellFilter's scipy logm reports ~1e-13 round-off on every step
            warnings.filterwarnings("ignore", "logm result may be inaccurate", RuntimeWarning)
            converged = bool(opt.run(fmax=fmax, steps=max_steps))
        energy = float(work.get_potential_energy())
    except _RELAX_ERRORS as exc:
        converged, energy = False, float("nan")
        reason = f"error: {type(exc).__name__}: {exc}".splitlines()[0][:200]
    if reason is None and not _sane(work, energy):
        converged, reason = False, f"exploded (non-finite or atoms closer than {MIN_DISTANCE} Å)"
    if reason is None and not converged:
        reason = f"not converged in {max_steps} steps"
    return RelaxResult(work, energy, int(opt.nsteps), converged, reason)


def _displacements(a: Atoms, b: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom minimum-image displacements b − a [N, 3] (Å, mean shift removed) and the
    mean cell [3, 3] they are expressed in. Periodic axes are wrapped in fractional
    coordinates of each structure's own cell, then mapped with the mean of the two cells."""
    if len(a) != len(b) or (a.numbers != b.numbers).any():
        raise ValueError(f"structures differ in atoms ({a.get_chemical_formula()} vs "
                         f"{b.get_chemical_formula()}); the correspondence must be known")
    cell = 0.5 * (a.cell.array + b.cell.array)
    pbc = a.pbc & b.pbc
    if not pbc.any():
        d = b.positions - a.positions
        return d - d.mean(axis=0), cell
    frac = b.cell.scaled_positions(b.positions) - a.cell.scaled_positions(a.positions)
    frac[:, pbc] -= np.round(frac[:, pbc])
    frac -= frac.mean(axis=0)
    return frac @ cell, cell


def normalised_rmsd(a: Atoms, b: Atoms) -> float:
    """RMSD between two copies of one structure (same atoms in the same order), normalised
    like pymatgen's ``get_rms_dist``: sqrt(mean |Δr_i|²) / (V/N)^(1/3).

    Δr_i are minimum-image displacements after removing their mean (a rigid shift is not an
    error), V the volume of the mean of the two cells. Non-periodic structures: RMSD in Å.
    Raises ValueError when the atoms differ.
    """
    d, cell = _displacements(a, b)
    rms = float(np.sqrt(np.mean(np.sum(d * d, axis=1))))
    volume = abs(np.linalg.det(cell)) if (a.pbc & b.pbc).any() else 0.0
    return rms / (volume / len(a)) ** (1.0 / 3.0) if volume > 0 else rms


def mean_displacement(a: Atoms, b: Atoms) -> float:
    """Mean minimum-image displacement (Å, mean shift removed) between two copies."""
    d, _ = _displacements(a, b)
    return float(np.mean(np.linalg.norm(d, axis=1)))


def adwt(displacements: Sequence[float]) -> float:
    """OC20 ADwT: mean over thresholds 0.01–0.5 Å of the fraction of displacements below."""
    d = np.asarray(displacements, dtype=float)
    if d.size == 0:
        return float("nan")
    return float(np.mean([(d < t).mean() for t in ADWT_THRESHOLDS]))


def oracle_relax(atoms: Atoms, oracle: CalcSpec, key: str | None, fmax: float,
                  max_steps: int, fixed_cell: bool) -> RelaxResult:
    """The oracle's relaxation of ``atoms``, remembered per process under ``key``."""
    if key is None:
        return relax(atoms, _build(oracle), fmax, max_steps, fixed_cell)
    ident = (key, fmax, max_steps, fixed_cell, atoms.numbers.tobytes(),
             atoms.positions.tobytes(), atoms.cell.array.tobytes(), atoms.pbc.tobytes())
    if ident not in _ORACLE_CACHE:
        _ORACLE_CACHE[ident] = relax(atoms, _build(oracle), fmax, max_steps, fixed_cell)
    return _ORACLE_CACHE[ident]


def relax_pair(atoms: Atoms, model: CalcSpec, oracle: CalcSpec, fmax: float = 0.05,
               max_steps: int = 500, fixed_cell: bool = False,
               oracle_key: str | None = None) -> dict:
    """Relax one structure with both calculators -> per-structure numbers (see module doc)."""
    ref = oracle_relax(atoms, oracle, oracle_key, fmax, max_steps, fixed_cell)
    out = {"oracle_ok": ref.converged, "ok": False, "steps": 0, "energy_error": None,
           "rmsd": None, "displacement": None, "reason": None}
    if not ref.converged:
        out["reason"] = f"oracle: {ref.reason}"
        return out
    try:
        mine = relax(atoms, _build(model), fmax, max_steps, fixed_cell)
    except _RELAX_ERRORS as exc:  # building the calculator failed
        out["reason"] = f"error: {type(exc).__name__}: {exc}".splitlines()[0][:200]
        return out
    out.update(ok=mine.converged, steps=mine.steps, reason=mine.reason)
    if mine.converged:
        out["energy_error"] = abs(mine.energy - ref.energy) / len(atoms)
        out["rmsd"] = normalised_rmsd(mine.atoms, ref.atoms)
        out["displacement"] = mean_displacement(mine.atoms, ref.atoms)
    return out


def _pair_job(args: tuple) -> dict:
    return relax_pair(*args)


def _mean_se(values: Sequence[float], name: str) -> dict[str, float | None]:
    """``{name: mean, name_se: standard error of the mean}`` (None when undefined)."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean()) if v.size else None
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else None
    return {name: mean, f"{name}_se": se}


def summarise(pairs: Sequence[dict], fixed_cell: bool = False) -> dict[str, float | None]:
    """Pool per-structure :func:`relax_pair` results into the relaxation metrics."""
    valid = [p for p in pairs if p["oracle_ok"]]
    ok = [p for p in valid if p["ok"]]
    out: dict[str, float | None] = {
        **_mean_se([float(not p["ok"]) for p in valid], "relax_failure_rate"),
        **_mean_se([p["energy_error"] if p["ok"] else FAILED_ENERGY_ERROR for p in valid],
                   "relax_energy_error"),
        **_mean_se([p["energy_error"] for p in ok], "relax_energy_error_converged"),
        **_mean_se([p["rmsd"] if p["ok"] else FAILED_RMSD for p in valid], "relax_rmsd"),
        **_mean_se([p["steps"] for p in valid], "relax_steps"),
        "relax_structures": len(valid), "relax_oracle_failures": len(pairs) - len(valid),
    }
    if fixed_cell:  # ADwT = mean over systems of the fraction of thresholds each is within
        out.update(_mean_se([adwt([p["displacement"] if p["ok"] else np.inf]) for p in valid],
                            "relax_adwt"))
    return out


def relaxation_errors(structures: Sequence[Atoms], model: CalcSpec, oracle: CalcSpec,
                      fmax: float = 0.05, max_steps: int = 500, fixed_cell: bool = False,
                      jobs: int = 1, progress: bool = False,
                      oracle_key: str | None = None) -> dict[str, float | None]:
    """Relaxation metrics (module docstring) over ``structures``; ``jobs`` parallel processes.

    With ``jobs > 1`` the calculators must be picklable (factories are: each worker builds
    its own instance per structure).
    """
    from mlip_scaling.progress import track

    tasks = [(a, model, oracle, fmax, max_steps, fixed_cell, oracle_key) for a in structures]
    bar = dict(total=len(tasks), desc="relax", enabled=progress, transient=True)
    if jobs > 1 and len(tasks) > 1:
        with worker_pool(min(jobs, len(tasks))) as ex:
            pairs = list(track(ex.map(_pair_job, tasks), **bar))
    else:
        pairs = [relax_pair(*t) for t in track(tasks, **bar)]
    return summarise(pairs, fixed_cell)
