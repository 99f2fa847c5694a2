"""NVE molecular dynamics: energy drift, stability and RDF error against the oracle's MD.

* ``md_drift``: |OLS slope| of E_total/N vs time after dropping the first 20 %, in
  meV/atom/ps (time is kept in fs internally: t_ps = step · dt_fs / 1000).
* ``md_stability``: fraction of the requested steps completed before a blow-up: the
  temperature exceeds 5× the start, two atoms come closer than 0.5 Å, or non-finite values.
* ``rdf_error``: ∫|g_model − g_oracle| dr / ∫|g_oracle − 1| dr, both from NVE runs from the
  same start and velocities.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet
from ase.neighborlist import neighbor_list

__all__ = ["run_nve", "energy_drift", "rdf", "md_errors"]


def energy_drift(energy_per_atom: np.ndarray, dt_fs: float, burn_in: float = 0.2) -> float:
    """|slope| of energy per atom (eV) vs time in meV/atom/ps, after the burn-in fraction."""
    e = np.asarray(energy_per_atom, dtype=float)
    t_ps = np.arange(len(e)) * dt_fs / 1000.0
    start = int(len(e) * burn_in)
    if len(e) - start < 3:
        return float("nan")
    slope = np.polyfit(t_ps[start:], e[start:], 1)[0]
    return float(abs(slope) * 1000.0)


def rdf(frames: list[np.ndarray], atoms: Atoms, r_max: float, n_bins: int = 60) -> np.ndarray:
    """Radial distribution function g(r) averaged over position frames (periodic cell)."""
    edges = np.linspace(0.0, r_max, n_bins + 1)
    hist = np.zeros(n_bins)
    work = atoms.copy()
    for pos in frames:
        work.positions = pos
        hist += np.histogram(neighbor_list("d", work, r_max), bins=edges)[0]
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    density = len(atoms) / atoms.get_volume()
    return hist / (len(frames) * len(atoms) * density * shell)


def run_nve(atoms: Atoms, calc: Calculator, temperature_K: float, steps: int,
            dt_fs: float = 1.0, seed: int = 0, every: int = 5) -> dict:
    """NVE velocity Verlet from Maxwell–Boltzmann velocities; stops at a blow-up."""
    work = atoms.copy()
    work.calc = calc
    MaxwellBoltzmannDistribution(work, temperature_K=temperature_K,
                                 rng=np.random.default_rng(seed))
    Stationary(work)
    dyn = VelocityVerlet(work, timestep=dt_fs * units.fs)
    energies, frames, done = [], [], 0
    for step in range(steps):
        dyn.run(1)
        e = work.get_potential_energy() + work.get_kinetic_energy()
        temp = work.get_temperature()
        close = neighbor_list("i", work, 0.5).size > 0
        if not np.isfinite(e) or temp > 5.0 * temperature_K or close:
            break
        energies.append(e / len(work))
        if step % every == 0:
            frames.append(work.positions.copy())
        done = step + 1
    return {"energy_per_atom": np.array(energies), "frames": frames,
            "stability": done / steps, "atoms": work}


def md_errors(atoms: Atoms, model: Calculator, oracle: Calculator, temperature_K: float = 600.0,
              steps: int = 500, dt_fs: float = 1.0, seed: int = 0) -> dict[str, float]:
    """Drift, stability and RDF error of the model's NVE run vs the oracle's."""
    mine = run_nve(atoms, model, temperature_K, steps, dt_fs, seed)
    ref = run_nve(atoms, oracle, temperature_K, steps, dt_fs, seed)
    r_max = 0.49 * min(np.linalg.norm(atoms.cell.array, axis=1).min(), 8.0)
    g_ref = rdf(ref["frames"], atoms, r_max)
    error = float("nan")
    if mine["frames"]:
        g = rdf(mine["frames"], atoms, r_max)
        denom = np.abs(g_ref - 1.0).sum()
        error = float(np.abs(g - g_ref).sum() / denom) if denom > 0 else float("nan")
    return {"md_drift": energy_drift(mine["energy_per_atom"], dt_fs),
            "md_stability": float(mine["stability"]), "rdf_error": error}
