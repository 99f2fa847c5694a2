"""Interval of the compute-frontier exponent of the test loss, frontier re-selected.

The frontier of the selection metric is the running minimum of noisy losses: which runs
it keeps, and how lucky they were, changes from one noise draw to the next, so the
t-interval of the log-log slope on the kept runs is too narrow (and biased). Parametric
bootstrap with the selection redone in every draw:

1. A smooth surrogate of log loss over all runs: least squares on (1, log N, log D, their
   squares and product; the cubic terms too from 40 runs) when N and D are given (at
   least 9 runs), else on (1, log C, log² C); residual variance s² with ν d.o.f.
2. Each draw: σ* = s·sqrt(χ²_ν/ν) (the noise level is estimated too); a plausible
   noiseless surface, the surrogate's coefficients drawn from their sampling distribution
   (σ*²·(XᵀX)⁻¹), so that the selection is replayed on surfaces other than the one
   fitted; its frontier exponent γ_s*; noisy losses log L* = surface + σ*·ε, the frontier
   chosen again on L*, its log-log slope γ*.
3. Basic bootstrap interval [γ̂ − q₀.₉₇₅(γ* − γ_s*), γ̂ − q₀.₀₂₅(γ* − γ_s*)]: the
   selection's spread and bias carried over to the observed exponent γ̂.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frontier_indices", "selection_interval", "N_BOOT"]

N_BOOT = 400


def _slope(c: np.ndarray, loss: np.ndarray, idx: np.ndarray) -> float:
    if len(np.unique(c[idx])) < 3:
        return float("nan")
    return float(-np.polyfit(np.log(c[idx]), np.log(loss[idx]), 1)[0])


def _surrogate(c: np.ndarray, loss: np.ndarray, runs) -> tuple[np.ndarray, np.ndarray,
                                                               np.ndarray, float, int]:
    """(design [n, p], coefficients [p], their unscaled covariance [p, p], residual sd,
    dof) of the smooth surrogate of log loss."""
    lc = np.log(c)
    if runs is not None and len(c) >= 9:
        u1, u2 = (np.log(np.asarray(v, float)) for v in runs)
        u1, u2 = ((u - u.mean()) / max(np.ptp(u), 1e-12) for u in (u1, u2))
        cols = [np.ones_like(u1), u1, u2, u1**2, u2**2, u1 * u2]
        if len(c) >= 40:  # cubic terms with at least 4 runs per coefficient
            cols += [u1**3, u2**3, u1**2 * u2, u1 * u2**2]
    else:
        lc = (lc - lc.mean()) / max(np.ptp(lc), 1e-12)
        cols = [np.ones_like(lc), lc, lc**2]
    design = np.stack(cols, axis=1)
    coef, *_ = np.linalg.lstsq(design, np.log(loss), rcond=None)
    dof = len(c) - np.linalg.matrix_rank(design)
    rss = float(((np.log(loss) - design @ coef) ** 2).sum())
    sd = float(np.sqrt(rss / dof)) if dof > 0 else float("nan")
    return design, coef, np.linalg.pinv(design.T @ design), sd, dof


def frontier_indices(compute, select) -> np.ndarray:
    """Indices of the compute-frontier runs: at each distinct compute the run with the best
    ``select`` (test loss), kept when below every cheaper run's (running minimum); sorted
    by compute. Runs with non-finite or non-positive values are never chosen."""
    c, s = np.asarray(compute, dtype=float), np.asarray(select, dtype=float)
    good = np.flatnonzero(np.isfinite(c) & np.isfinite(s) & (c > 0) & (s > 0))
    order = good[np.lexsort((s[good], c[good]))]  # by compute, then best first
    if not len(order):
        return order
    first = np.concatenate([[True], c[order][1:] != c[order][:-1]])
    order = order[first]  # the best run at each distinct compute
    before = np.concatenate([[np.inf], np.minimum.accumulate(s[order])[:-1]])
    return order[s[order] < before]


def selection_interval(compute, loss, runs=None, n_boot: int = N_BOOT, seed: int = 0,
                       level: float = 0.95) -> list[float] | None:
    """95 % interval [lo, hi] of the frontier exponent of ``loss`` (module docstring);
    ``runs``: (N [n], D [n]) of each run, or None. None when it cannot be formed."""
    c, loss = np.asarray(compute, float), np.asarray(loss, float)
    good = np.isfinite(c) & np.isfinite(loss) & (c > 0) & (loss > 0)
    if runs is not None:
        runs = tuple(np.asarray(v, float)[good] for v in runs)
        good_runs = np.all([np.isfinite(v) & (v > 0) for v in runs], axis=0)
        runs = runs if good_runs.all() else None
    c, loss = c[good], loss[good]
    observed = _slope(c, loss, frontier_indices(c, loss))
    design, coef, cov, sd, dof = _surrogate(c, loss, runs)
    if not np.isfinite(observed) or dof < 1 or not np.isfinite(sd):
        return None
    rng = np.random.default_rng(seed)
    sig = sd * np.sqrt(rng.chisquare(dof, n_boot) / dof)
    root = np.linalg.cholesky(cov + 1e-12 * np.trace(cov) * np.eye(len(coef)))
    surfaces = (coef[None, :] + sig[:, None] * rng.normal(size=(n_boot, len(coef))) @ root.T
                ) @ design.T  # [n_boot, n] plausible noiseless log losses
    delta = np.empty(n_boot)
    for k, (surface, s) in enumerate(zip(np.exp(surfaces), sig)):
        noisy = surface * np.exp(s * rng.normal(size=len(c)))
        delta[k] = (_slope(c, noisy, frontier_indices(c, noisy))
                    - _slope(c, surface, frontier_indices(c, surface)))
    delta = delta[np.isfinite(delta)]
    if len(delta) < n_boot // 2:
        return None
    q_lo, q_hi = np.quantile(delta, [(1 - level) / 2, (1 + level) / 2])
    return [float(observed - q_hi), float(observed - q_lo)]
