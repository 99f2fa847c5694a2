"""Relaxation errors of a model against its oracle (Matbench-Discovery-style protocol).

Each structure is relaxed twice, with the model and with the oracle: FIRE on a
FrechetCellFilter (positions and cell; positions only for non-periodic structures or
``fixed_cell=True``), fmax 0.05 eV/Å, at most 500 steps. Metrics over the structures whose
oracle relaxation converged (the reference; others are counted in ``relax_oracle_failures``):

* ``relax_energy_error``: mean |E_model(x_model)/N − E_oracle(x_oracle)/N| in eV/atom — the
  model's energy of its own relaxed structure against the oracle's energy of the oracle's
  relaxed structure (failed model relaxations excluded; they count in the failure rate);
* ``relax_rmsd``: mean normalised RMSD between the two relaxed structures from pymatgen
  ``StructureMatcher(stol=1.0, scale=False).get_rms_dist``; unmatched or failed counts 1.0;
* ``relax_failure_rate``: fraction of model relaxations not converged in ``max_steps`` or
  exploded (non-finite values, or two atoms closer than 0.5 Å);
* ``relax_steps``: mean optimiser steps of the model relaxations;
* ``relax_adwt`` (fixed cell only): OC20 average distance within threshold, the mean over
  thresholds 0.01–0.5 Å of the fraction of systems whose mean minimum-image displacement
  between the two relaxed structures is below the threshold.

Calculators are given as instances or as zero-argument picklable factories (e.g.
``functools.partial(get_oracle, "emt")``); factories let ``jobs > 1`` relax structures in
parallel processes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.geometry import find_mic
from ase.neighborlist import neighbor_list
from ase.optimize import FIRE

from mlip_scaling.procs import die_with_parent

__all__ = ["RelaxResult", "relax", "normalised_rmsd", "adwt", "relax_pair",
           "relaxation_errors", "CalcSpec"]

CalcSpec = Calculator | Callable[[], Calculator]
MIN_DISTANCE = 0.5  # Å: closer atoms mean the relaxation exploded
ADWT_THRESHOLDS = np.linspace(0.01, 0.5, 50)  # Å


@dataclass
class RelaxResult:
    """One relaxation: final structure, energy (eV), optimiser steps, convergence."""

    atoms: Atoms
    energy: float
    steps: int
    converged: bool


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
    return neighbor_list("i", atoms, MIN_DISTANCE).size == 0


def relax(atoms: Atoms, calc: Calculator, fmax: float = 0.05, max_steps: int = 500,
          fixed_cell: bool = False) -> RelaxResult:
    """Relax a copy of ``atoms`` with FIRE (+ FrechetCellFilter when periodic, cell free)."""
    work = atoms.copy()
    work.calc = calc
    target = work if fixed_cell or not work.pbc.all() else FrechetCellFilter(work)
    opt = FIRE(target, logfile=None)
    try:
        with single_blas_thread():
            converged = bool(opt.run(fmax=fmax, steps=max_steps))
        energy = float(work.get_potential_energy())
    except (ValueError, FloatingPointError, RuntimeError, np.linalg.LinAlgError):
        converged, energy = False, float("nan")
    ok = _sane(work, energy)
    return RelaxResult(work, energy, int(opt.nsteps), converged and ok)


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


def mean_displacement(a: Atoms, b: Atoms) -> float:
    """Mean minimum-image displacement (Å) between two structures of the same cell."""
    _, dist = find_mic(b.positions - a.positions, a.cell, a.pbc)
    return float(np.mean(dist))


def adwt(displacements: Sequence[float]) -> float:
    """OC20 ADwT: mean over thresholds 0.01–0.5 Å of the fraction of displacements below."""
    d = np.asarray(displacements, dtype=float)
    if d.size == 0:
        return float("nan")
    return float(np.mean([(d < t).mean() for t in ADWT_THRESHOLDS]))


def relax_pair(atoms: Atoms, model: CalcSpec, oracle: CalcSpec, fmax: float = 0.05,
               max_steps: int = 500, fixed_cell: bool = False) -> dict:
    """Relax one structure with both calculators -> per-structure numbers (see module doc)."""
    ref = relax(atoms, _build(oracle), fmax, max_steps, fixed_cell)
    mine = relax(atoms, _build(model), fmax, max_steps, fixed_cell)
    n = len(atoms)
    out = {"oracle_ok": ref.converged, "ok": mine.converged, "steps": mine.steps,
           "energy_error": None, "rmsd": 1.0, "displacement": None}
    if ref.converged and mine.converged:
        out["energy_error"] = abs(mine.energy - ref.energy) / n
        out["rmsd"] = normalised_rmsd(mine.atoms, ref.atoms)
        if fixed_cell:
            out["displacement"] = mean_displacement(mine.atoms, ref.atoms)
    return out


def _pair_job(args: tuple) -> dict:
    return relax_pair(*args)


@contextlib.contextmanager
def worker_env() -> Iterator[None]:
    """Spawned workers start with one BLAS/OpenMP thread each (they inherit os.environ)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: "1" for k in names})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _mean(values: list) -> float | None:
    return float(np.mean(values)) if values else None


def summarise(pairs: Sequence[dict], fixed_cell: bool = False) -> dict[str, float | None]:
    """Pool per-structure :func:`relax_pair` results into the relaxation metrics."""
    valid = [p for p in pairs if p["oracle_ok"]]
    out = {
        "relax_energy_error": _mean([p["energy_error"] for p in valid if p["ok"]]),
        "relax_rmsd": _mean([p["rmsd"] if p["ok"] else 1.0 for p in valid]),
        "relax_failure_rate": (sum(not p["ok"] for p in valid) / len(valid)) if valid else None,
        "relax_steps": _mean([p["steps"] for p in valid]),
        "relax_oracle_failures": len(pairs) - len(valid),
    }
    if fixed_cell:
        out["relax_adwt"] = (adwt([p["displacement"] if p["ok"] else np.inf for p in valid])
                             if valid else None)
    return out


def relaxation_errors(structures: Sequence[Atoms], model: CalcSpec, oracle: CalcSpec,
                      fmax: float = 0.05, max_steps: int = 500, fixed_cell: bool = False,
                      jobs: int = 1, progress: bool = False) -> dict[str, float | None]:
    """Relaxation metrics (module docstring) over ``structures``; ``jobs`` parallel processes.

    With ``jobs > 1`` the calculators must be picklable (factories are: each worker builds
    its own instance per structure).
    """
    from tqdm import tqdm

    tasks = [(a, model, oracle, fmax, max_steps, fixed_cell) for a in structures]
    bar = dict(total=len(tasks), desc="relax", disable=not progress, leave=False)
    if jobs > 1 and len(tasks) > 1:
        with worker_env(), ProcessPoolExecutor(min(jobs, len(tasks)),
                                                mp_context=get_context("spawn"),
                                                initializer=die_with_parent,
                                                initargs=(os.getpid(),)) as ex:
            pairs = list(tqdm(ex.map(_pair_job, tasks), **bar))
    else:
        pairs = [relax_pair(*t) for t in tqdm(tasks, **bar)]
    return summarise(pairs, fixed_cell)
