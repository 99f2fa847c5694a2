"""NVE molecular dynamics: energy drift, stability and RDF error against the oracle's MD.

Both runs start from the same structure with the same Maxwell–Boltzmann velocities (seeded,
zero total momentum) and use velocity Verlet with ``dt_fs`` (ASE time = ``dt_fs * units.fs``).

* ``md_drift``: |OLS slope| of E_total/N (eV) against time after dropping the first 20 % of
  the completed steps, in meV/atom/ps (time kept in fs: slope_eV/fs × 1e3 meV/eV × 1e3 fs/ps).
  ``md_drift_se`` is its standard error (OLS, with the residuals' lag-1 autocorrelation
  shrinking the effective number of points); ``md_drift_resolved`` is 1.0 when the drift
  exceeds twice that noise floor, else 0.0 (a drift at the noise floor says only "below
  it"). ``md_oracle_drift`` is the oracle's own drift under the same integrator, the
  smallest drift a perfect model can read.
* ``md_stability``: fraction of the requested steps completed before a blow-up: non-finite
  energy/positions, temperature above ``5 × T`` (runaway), two atoms closer than 0.5 Å, or a
  nearest-neighbour bond of the start (pairs within 1.2 × the shortest distance, followed
  with their periodic image) stretched or compressed by more than 0.5 Å.
  ``md_unstable`` is 1.0 when the model's run blew up, else 0.0.
* ``rdf_error``: ∫|g_model − g_oracle| dr / ∫|g_oracle − 1| dr, g(r) averaged over frames of
  each trajectory on one fixed r grid up to a cutoff below half the smallest cell height;
  only when both trajectories completed every step (equal length, stable), else None (the
  instability is reported by ``md_stability``). ``rdf_error_se``: standard error from
  ``RDF_BLOCKS`` consecutive blocks of frames, each compared with the oracle's same block.

With an ``oracle_key`` the oracle's trajectory is kept in memory per process, so evaluating
several models runs it only once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet
from ase.neighborlist import neighbor_list

from mlip_scaling.scaling.downstream.relax import too_close

__all__ = ["MDRun", "run_nve", "energy_drift", "drift_with_error", "rdf", "rdf_cutoff",
           "rdf_error", "md_errors", "oracle_run", "stable_start"]

T_RUNAWAY = 5.0  # blow-up when T > T_RUNAWAY × target
MIN_DISTANCE = 0.5  # Å
BOND_TOLERANCE = 0.5  # Å
BOND_FACTOR = 1.2  # start bonds: pairs within this × the shortest distance
RDF_BLOCKS = 4  # blocks of frames for the standard error of the RDF error
_ORACLE_RUNS: dict[tuple, MDRun] = {}


@dataclass
class MDRun:
    """One NVE trajectory: E_total/N per completed step (eV), position frames, stability."""

    energy_per_atom: np.ndarray
    frames: list[np.ndarray] = field(default_factory=list)
    stability: float = 0.0
    reason: str | None = None


def energy_drift(energy_per_atom: np.ndarray, dt_fs: float, burn_in: float = 0.2) -> float:
    """|OLS slope| of E_total/N (eV, one value per step) vs time, in meV/atom/ps."""
    return drift_with_error(energy_per_atom, dt_fs, burn_in)[0]


def drift_with_error(energy_per_atom: np.ndarray, dt_fs: float,
                     burn_in: float = 0.2) -> tuple[float, float]:
    """(|OLS slope|, its standard error) of E_total/N vs time, both in meV/atom/ps.

    The OLS error is inflated by sqrt((1 + ρ)/(1 − ρ)), ρ ≥ 0 the lag-1 autocorrelation of
    the residuals (energy fluctuations of consecutive steps are correlated).
    """
    e = np.asarray(energy_per_atom, dtype=float)
    start = int(len(e) * burn_in)
    t, y = np.arange(start, len(e)) * dt_fs, e[start:]
    if len(y) < 4:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(t, y, 1)
    resid = y - (slope * t + intercept)
    tc = t - t.mean()
    se = np.sqrt(resid @ resid / (len(y) - 2) / (tc @ tc))
    denom = resid @ resid
    rho = float(np.clip(resid[1:] @ resid[:-1] / denom, 0.0, 0.99)) if denom > 0 else 0.0
    se *= np.sqrt((1 + rho) / (1 - rho))
    return float(abs(slope) * 1e6), float(se * 1e6)


def rdf_cutoff(atoms: Atoms, r_max: float = 6.0) -> float:
    """An RDF cutoff (Å) below half the smallest cell height, at most ``r_max``."""
    cell = atoms.cell.array
    volume = abs(np.linalg.det(cell))
    heights = [volume / np.linalg.norm(np.cross(cell[i - 2], cell[i - 1])) for i in range(3)]
    return float(min(0.49 * min(heights), r_max))


def rdf(frames: list[np.ndarray], atoms: Atoms, r_max: float, n_bins: int = 60) -> np.ndarray:
    """g(r) [n_bins] on the grid linspace(0, r_max, n_bins + 1), averaged over frames."""
    edges = np.linspace(0.0, r_max, n_bins + 1)
    hist = np.zeros(n_bins)
    work = atoms.copy()
    for pos in frames:
        work.positions = pos
        hist += np.histogram(neighbor_list("d", work, r_max), bins=edges)[0]
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    density = len(atoms) / atoms.get_volume()
    return hist / (max(len(frames), 1) * len(atoms) * density * shell)


def rdf_error(g: np.ndarray, g_ref: np.ndarray) -> float:
    """∫|g − g_ref| dr / ∫|g_ref − 1| dr on a shared uniform grid."""
    denom = np.abs(g_ref - 1.0).sum()
    return float(np.abs(g - g_ref).sum() / denom) if denom > 0 else float("nan")


def _start_bonds(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    i, j, d, shift = neighbor_list("ijdS", atoms, 6.0)
    if d.size == 0:
        return i, j, shift, d
    keep = d < BOND_FACTOR * d.min()
    return i[keep], j[keep], shift[keep], d[keep]


def _blow_up(atoms: Atoms, bonds: tuple, temperature_K: float) -> str | None:
    e = atoms.get_potential_energy()
    if not (np.isfinite(e) and np.isfinite(atoms.positions).all()):
        return "non-finite energy or positions"
    if atoms.get_temperature() > T_RUNAWAY * temperature_K:
        return f"temperature above {T_RUNAWAY:g} x {temperature_K:g} K"
    if too_close(atoms, MIN_DISTANCE):
        return f"atoms closer than {MIN_DISTANCE} Å"
    i, j, shift, d0 = bonds
    if d0.size:
        vec = atoms.positions[j] - atoms.positions[i] + shift @ atoms.cell.array
        if np.abs(np.linalg.norm(vec, axis=1) - d0).max() > BOND_TOLERANCE:
            return f"a start bond changed by more than {BOND_TOLERANCE} Å"
    return None


def run_nve(atoms: Atoms, calc: Calculator, temperature_K: float, steps: int,
            dt_fs: float = 1.0, seed: int = 0, every: int = 5) -> MDRun:
    """NVE velocity Verlet from seeded Maxwell–Boltzmann velocities; stops at a blow-up."""
    work = atoms.copy()
    work.calc = calc
    MaxwellBoltzmannDistribution(work, temperature_K=temperature_K,
                                 rng=np.random.default_rng(seed))
    Stationary(work)
    bonds = _start_bonds(work)
    dyn = VelocityVerlet(work, timestep=dt_fs * units.fs)
    run = MDRun(np.empty(0))
    energies, done = [], 0
    for step in range(steps):
        try:
            dyn.run(1)
            run.reason = _blow_up(work, bonds, temperature_K)
        except (ValueError, RuntimeError, FloatingPointError) as exc:
            run.reason = f"calculator error: {exc}"
        if run.reason:
            break
        energies.append((work.get_potential_energy() + work.get_kinetic_energy()) / len(work))
        if step % every == every - 1:
            run.frames.append(work.positions.copy())
        done = step + 1
    run.energy_per_atom = np.array(energies)
    run.stability = done / steps
    return run


def _rdf_errors(mine: MDRun, ref: MDRun, atoms: Atoms, n_bins: int) -> dict[str, float | None]:
    """rdf_error over the whole runs and its block standard error (module docstring)."""
    if not (mine.stability == 1.0 and ref.stability == 1.0 and mine.frames
            and len(mine.frames) == len(ref.frames)):
        return {"rdf_error": None, "rdf_error_se": None}
    r_max = rdf_cutoff(atoms)
    error = rdf_error(rdf(mine.frames, atoms, r_max, n_bins), rdf(ref.frames, atoms, r_max, n_bins))
    blocks = np.array_split(np.arange(len(mine.frames)), min(RDF_BLOCKS, len(mine.frames)))
    per_block = [rdf_error(rdf([mine.frames[i] for i in b], atoms, r_max, n_bins),
                           rdf([ref.frames[i] for i in b], atoms, r_max, n_bins)) for b in blocks]
    se = float(np.std(per_block, ddof=1) / np.sqrt(len(blocks))) if len(blocks) > 1 else None
    return {"rdf_error": error, "rdf_error_se": se}


def oracle_run(atoms: Atoms, oracle: Calculator, key: str | None, *args) -> MDRun:
    """The oracle's NVE run from ``atoms``, remembered per process under ``key``."""
    if key is None:
        return run_nve(atoms, oracle, *args)
    ident = (key, *args, atoms.numbers.tobytes(), atoms.positions.tobytes(),
             atoms.cell.array.tobytes())
    if ident not in _ORACLE_RUNS:
        _ORACLE_RUNS[ident] = run_nve(atoms, oracle, *args)
    return _ORACLE_RUNS[ident]


def stable_start(candidates: list[Atoms], oracle: Calculator, key: str | None,
                 temperature_K: float, steps: int, dt_fs: float = 1.0, seed: int = 0,
                 every: int = 5) -> Atoms:
    """The first candidate start on which the oracle's own NVE run completes every step
    (a start the oracle cannot hold says nothing about the model); else the first."""
    for atoms in candidates:
        if oracle_run(atoms, oracle, key, temperature_K, steps, dt_fs, seed,
                      every).stability == 1.0:
            return atoms
    return candidates[0]


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def md_errors(atoms: Atoms, model: Calculator, oracle: Calculator, temperature_K: float = 300.0,
              steps: int = 500, dt_fs: float = 1.0, seed: int = 0, every: int = 5,
              n_bins: int = 60, oracle_key: str | None = None) -> dict[str, float | None]:
    """MD metrics of the model's NVE run vs the oracle's (module docstring): md_drift,
    md_drift_se (meV/atom/ps), md_drift_resolved, md_stability, md_unstable, rdf_error,
    rdf_error_se, and the oracle's md_oracle_drift and md_oracle_stability."""
    mine = run_nve(atoms, model, temperature_K, steps, dt_fs, seed, every)
    ref = oracle_run(atoms, oracle, oracle_key, temperature_K, steps, dt_fs, seed, every)
    drift, se = drift_with_error(mine.energy_per_atom, dt_fs)
    resolved = float(drift > 2.0 * se) if np.isfinite(drift) and np.isfinite(se) else None
    return {"md_drift": _finite(drift), "md_drift_se": _finite(se),
            "md_drift_resolved": resolved, "md_stability": float(mine.stability),
            "md_unstable": float(mine.stability < 1.0), **_rdf_errors(mine, ref, atoms, n_bins),
            "md_oracle_drift": _finite(drift_with_error(ref.energy_per_atom, dt_fs)[0]),
            "md_oracle_stability": float(ref.stability)}
