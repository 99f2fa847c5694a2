"""Planted-law calibration of the fits: bias, RMSE, interval coverage, false exponents
and false floors over seeded repetitions.

Settings (log-normal noise on every point): ``power-K`` L = 3·N^−0.3, 5 % noise, K sizes
over N = 1e3..1e7; ``floor-K`` L = 0.05 + 30·N^−0.4, 2 % noise, K sizes over 1e3..1e8
(``floor-4`` with 3 seeds per size); ``joint-K`` L = 0.02 + 50/N^0.35 + 8/D^0.3 on a K×K grid,
2 % noise; ``flat-<form>`` constant L, 5 % noise (false exponents); ``nofloor-K`` the floor
form on power-law data (false floors); ``frontier-null`` the compute-frontier power law
of a metric that ignores compute, frontier chosen by test loss (false exponents).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mlip_scaling.scaling.fit import fit_law
from mlip_scaling.scaling.frontier import frontier_fits

__all__ = ["SETTINGS", "Summary", "run_setting"]


@dataclass
class Setting:
    form: str
    sizes: int
    truth: dict[str, float]  # planted exponents ({} when no exponent should be found)
    seeds: int = 1
    kind: str = "law"  # law | flat | nofloor | frontier


SETTINGS = {
    **{f"power-{k}": Setting("power", k, {"beta": 0.3}) for k in (4, 5, 8)},
    "floor-4": Setting("floor", 4, {"b": 0.4, "E": 0.05}, seeds=3),
    **{f"floor-{k}": Setting("floor", k, {"b": 0.4, "E": 0.05}) for k in (5, 8)},
    **{f"joint-{k}": Setting("joint", k, {"a": 0.35, "b": 0.3}) for k in (4, 5, 8)},
    **{f"flat-{f}": Setting(f, 6, {}, kind="flat") for f in ("power", "floor", "joint")},
    **{f"nofloor-{k}": Setting("floor", k, {}, kind="nofloor") for k in (5, 8)},
    "frontier-null": Setting("power", 4, {}, kind="frontier"),
}


@dataclass
class Summary:
    """One row of the calibration table (rates in [0, 1])."""

    setting: str
    reps: int
    reported: float  # fraction of repetitions with status ok
    bias: float | None  # mean estimate − truth of the (first) exponent, over ok fits
    rmse: float | None
    coverage: dict[str, float] | None  # per exponent: fraction of ok fits whose interval holds it
    false_exponent: float | None  # flat data: fraction given an exponent
    false_floor: float | None  # floor-less data: fraction given a floor
    seconds: float


def _frontier_fit(rng: np.random.Generator):
    """4×4 grid of runs (compute 6·N·D) whose test loss follows the joint law, and a
    downstream metric that ignores compute (30 % noise): its frontier power law."""
    n, d = (v.ravel() for v in np.meshgrid(np.logspace(4, 7, 4), np.logspace(3, 6, 4)))
    loss = (0.01 + 40 / n**0.4 + 20 / d**0.4) * np.exp(rng.normal(0, 0.01, 16))
    metric = np.exp(rng.normal(0, 0.3, 16))
    return frontier_fits(6 * n * d, loss, metric, forms=("power",), n_perm=200,
                         seed=int(rng.integers(1 << 30)))[2][0]


def _data(s: Setting, rng: np.random.Generator):
    if s.form == "joint":
        n, d = (v.ravel() for v in np.meshgrid(np.logspace(4, 7, s.sizes),
                                               np.logspace(2, 5, s.sizes), indexing="ij"))
        law = np.ones_like(n) if s.kind == "flat" else 0.02 + 50 / n**0.35 + 8 / d**0.3
        noise = 0.05 if s.kind == "flat" else 0.02
        return n, law * np.exp(rng.normal(0, noise, len(n))), d
    if s.form == "floor" and s.kind == "law":
        x = np.repeat(np.logspace(3, 8, s.sizes), s.seeds)
        return x, (0.05 + 30 * x**-0.4) * np.exp(rng.normal(0, 0.02, len(x))), None
    x = np.repeat(np.logspace(3, 7, s.sizes), s.seeds)
    law = np.ones_like(x) if s.kind == "flat" else 3.0 * x**-0.3
    return x, law * np.exp(rng.normal(0, 0.05, len(x))), None


def run_setting(name: str, reps: int, seed: int = 0) -> Summary:
    """Fit ``reps`` seeded data sets of setting ``name`` and summarise."""
    s = SETTINGS[name]
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    fits = []
    for _ in range(reps):
        if s.kind == "frontier":
            fits.append(_frontier_fit(rng))
            continue
        x, y, d = _data(s, rng)
        fits.append(fit_law(s.form, x, y, d=d))
    ok = [f for f in fits if f.ok]
    summary = Summary(name, reps, len(ok) / reps, None, None, None, None, None, 0.0)
    if s.kind in ("flat", "frontier"):
        summary.false_exponent = summary.reported
    elif s.kind == "nofloor":
        summary.false_floor = summary.reported
    elif ok:
        key = next(iter(s.truth))
        err = np.array([f.params[key] - s.truth[key] for f in ok])
        summary.bias, summary.rmse = float(err.mean()), float(np.sqrt((err**2).mean()))
        summary.coverage = {k: float(np.mean([f.ci[k][0] <= v <= f.ci[k][1] for f in ok]))
                            for k, v in s.truth.items()}
    summary.seconds = time.perf_counter() - start
    return summary
