"""Planted data sets of the fit calibration (``fit_calibration``): laws, noise models, grids.

Every generator returns (x [n], y [n], d [n] or None, se [n] or None) with log-normal
noise on y. Noise models: independent (sd ``sigma`` on log y); replicate seeds whose
errors share a per-size (per-cell) component with correlation ``rho`` (shared sd
σ·√ρ, individual σ·√(1 − ρ)); noise falling geometrically by ``ratio`` from the smallest
to the largest size, each point's standard error recorded as an estimate with 30 d.o.f.
(``record``: recorded at equal noise too). A recorded standard error describes a run's own
noise, sd σ·√(1 − ρ): the component shared by a size's seeds is not in it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["POWER", "FLOOR", "JOINT", "BROKEN", "law_data", "broken_law", "frontier_runs",
           "frontier_truth", "SE_DOF"]

POWER = {"alpha": 3.0, "beta": 0.3, "lo": 3, "hi": 7, "sigma": 0.05}
FLOOR = {"E": 0.05, "A": 30.0, "b": 0.4, "lo": 3, "hi": 8, "sigma": 0.02}
JOINT = {"E": 0.02, "A": 50.0, "a": 0.35, "B": 8.0, "b": 0.3, "sigma": 0.02}
#: broken law: exponent b1 below the break N_b, b2 above, smoothness s (in ln N)
BROKEN = {"a": 3.0, "b1": 0.1, "b2": 0.4, "Nb": 1e5, "s": 0.5, "lo": 3, "hi": 7,
          "sigma": 0.05}
SE_DOF = 30  # degrees of freedom of a recorded standard error


def broken_law(x: np.ndarray, a: float, b1: float, b2: float, nb: float, s: float
               ) -> np.ndarray:
    """L = a·N^−b1·(1 + (N/N_b)^(1/s))^(−(b2−b1)·s)."""
    x = np.asarray(x, float)
    return a * x**-b1 * np.exp(-(b2 - b1) * s * np.logaddexp(0.0, np.log(x / nb) / s))


def _noise(rng: np.random.Generator, cells: int, seeds: int, sigma, rho: float
           ) -> np.ndarray:
    """Log-noise [cells·seeds] (cell-major), total sd ``sigma`` (scalar or per cell),
    correlation ``rho`` between the seeds of one cell."""
    sig = np.broadcast_to(np.asarray(sigma, float), (cells,))
    shared = rng.normal(0, 1, cells) * np.sqrt(rho)
    own = rng.normal(0, 1, (cells, seeds)) * np.sqrt(1 - rho)
    return ((shared[:, None] + own) * sig[:, None]).ravel()


def law_data(form: str, sizes: int, rng: np.random.Generator, seeds: int = 1,
             rho: float = 0.0, ratio: float = 1.0, flat: bool = False,
             nofloor: bool = False, record: bool = False):
    """Planted ``form`` data (power, floor, joint, broken) at ``sizes`` sizes (a
    sizes×sizes grid for joint); ``flat``: constant law (5 % noise); ``nofloor``: the pure
    power law on the floor form's range; ``ratio`` > 1 or ``record`` records standard
    errors (not for joint)."""
    if form == "joint":
        n, d = (v.ravel() for v in np.meshgrid(np.logspace(4, 7, sizes),
                                               np.logspace(2, 5, sizes), indexing="ij"))
        j = JOINT
        law = np.ones_like(n) if flat else j["E"] + j["A"] / n ** j["a"] + j["B"] / d ** j["b"]
        sigma = 0.05 if flat else j["sigma"]
        noise = _noise(rng, len(n), seeds, sigma, rho)
        return (np.repeat(n, seeds), np.repeat(law, seeds) * np.exp(noise),
                np.repeat(d, seeds), None)
    p = FLOOR if form == "floor" else BROKEN if form == "broken" else POWER
    x = np.logspace(p["lo"], p["hi"], sizes)
    if flat:
        law, sigma = np.ones_like(x), 0.05
    elif form == "floor" and not nofloor:
        law, sigma = p["E"] + p["A"] * x ** -p["b"], p["sigma"]
    elif form == "broken":
        law, sigma = broken_law(x, p["a"], p["b1"], p["b2"], p["Nb"], p["s"]), p["sigma"]
    else:
        law, sigma = 3.0 * x**-0.3, p["sigma"]
    sig = sigma * 2 * ratio ** -np.linspace(0, 1, sizes) if ratio != 1 else sigma
    noise = _noise(rng, sizes, seeds, sig, rho)
    y = np.repeat(law, seeds) * np.exp(noise)
    if ratio == 1 and not record:
        return np.repeat(x, seeds), y, None, None
    est = np.sqrt(rng.chisquare(SE_DOF, len(y)) / SE_DOF)
    own = np.broadcast_to(np.asarray(sig, float), (sizes,)) * np.sqrt(1 - rho)
    return np.repeat(x, seeds), y, None, y * np.repeat(own, seeds) * est


def frontier_runs(rng: np.random.Generator | None, sigma: float, k: int = 5):
    """k×k grid of runs (N = 1e4..1e7, D = 1e3..1e6, compute 6·N·D) with test loss
    40/N^0.4 + 20/D^0.3 (log-normal noise ``sigma``; noiseless when ``rng`` is None).
    Returns (compute, loss, n, d)."""
    n, d = (v.ravel() for v in np.meshgrid(np.logspace(4, 7, k), np.logspace(3, 6, k)))
    loss = 40 / n**0.4 + 20 / d**0.3
    if rng is not None:
        loss = loss * np.exp(rng.normal(0, sigma, len(loss)))
    return 6 * n * d, loss, n, d


def frontier_truth(k: int = 5) -> float:
    """Exponent of the power law fitted to the noiseless frontier of the grid."""
    from mlip_scaling.scaling.frontier import frontier

    c, l = frontier(*frontier_runs(None, 0.0, k)[:2])
    return float(-np.polyfit(np.log(c), np.log(l), 1)[0])
