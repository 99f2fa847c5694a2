"""Compute-optimal frontier of pooled runs: selection, permutation null and laws.

Frontier runs are chosen by the selection metric (test loss) only, the law of each metric
is fitted on those runs, and a permutation null gives ``p_perm`` (the fraction of null
exponents >= the observed one): compute labels shuffled among the frontier runs (selection
kept), which decides the trend of every other metric. For the test loss itself, whose
frontier decreases by construction, the trend test is the F-test over all runs, and
``p_perm`` shuffles labels among all runs and re-selects the frontier (how steep a
frontier selection alone makes), printed beside it.
"""

from __future__ import annotations

import itertools

import numpy as np

from mlip_scaling.scaling.fit import ALPHA, FitResult, _clean, fit_law
from mlip_scaling.scaling.fit_cells import loglog_ols
from mlip_scaling.scaling.frontier_boot import N_BOOT, frontier_indices, selection_interval

__all__ = ["frontier", "frontier_indices", "frontier_null", "fit_frontier", "frontier_fits",
           "frontier_fit"]


def frontier(compute, loss) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal frontier of pooled runs: sorted (compute [M], loss [M])."""
    idx = frontier_indices(compute, loss)
    return np.asarray(compute, float)[idx], np.asarray(loss, float)[idx]


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    u, v = np.log(x), np.log(y)
    sxx = ((u - u.mean()) ** 2).sum()
    return float(-((u - u.mean()) * (v - v.mean())).sum() / sxx) if sxx > 0 else np.nan


def frontier_null(compute, select, metric, n_perm: int = 1000, seed: int = 0,
                  reselect: bool = False) -> tuple[float, np.ndarray, float]:
    """Permutation null of the frontier exponent of ``metric``: (observed β, null β's,
    p = fraction of null β >= observed, the observed arrangement counted).

    The frontier runs are chosen by ``select`` (test loss). Default: compute labels are
    shuffled among the frontier runs (selection kept; all orders when there are at most
    6). ``reselect``: shuffled among all runs and the frontier chosen again — the null of
    the selection metric itself, whose frontier decreases by construction."""
    c, s, m = (np.asarray(v, dtype=float) for v in (compute, select, metric))
    usable = np.isfinite(c) & (c > 0) & np.isfinite(s) & (s > 0)
    c, s, m = c[usable], s[usable], m[usable]
    if not reselect:
        idx = frontier_indices(c, s)
        idx = idx[np.isfinite(m[idx]) & (m[idx] > 0)]
        c, m = c[idx], m[idx]

    def beta(labels: np.ndarray) -> float:
        idx = frontier_indices(labels, s) if reselect else np.arange(len(labels))
        idx = idx[np.isfinite(m[idx]) & (m[idx] > 0)]
        return _slope(labels[idx], m[idx]) if len(np.unique(labels[idx])) >= 3 else np.nan

    observed = beta(c)
    if not reselect and len(c) <= 6:
        draws = [c[list(p)] for p in itertools.permutations(range(len(c)))]
    else:
        rng = np.random.default_rng(seed)
        draws = [c] + [rng.permutation(c) for _ in range(n_perm)]
    null = np.array([beta(labels) for labels in draws])
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or not len(null):
        return observed, null, float("nan")
    return observed, null, float(np.mean(null >= observed - 1e-12))


def fit_frontier(compute, loss, metric=None, forms=("floor", "power"), n_perm: int = 1000,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, FitResult]:
    """Frontier runs chosen by ``loss`` and the law of ``metric`` (default: the loss) on
    them: E + A·C^−γ when the floor form passes its tests, else the pure power law.

    Returns (frontier FLOPs [M], frontier metric [M], FitResult); see ``frontier_fits``.
    """
    c, m, fits = frontier_fits(compute, loss, metric, forms, n_perm, seed)
    best = next((f for f in fits if f.ok), fits[-1])
    if best is not fits[0] and best.ok:
        best.reason = f"{fits[0].form} form: {fits[0].reason}; " + best.reason
    return c, m, best


def frontier_fits(compute, loss, metric=None, forms=("power", "floor"), n_perm: int = 1000,
                  seed: int = 0, runs=None) -> tuple[np.ndarray, np.ndarray, list[FitResult]]:
    """Each form fitted to ``metric`` on the frontier runs chosen by ``loss``.

    Trend test: for another metric, the permutation null with the selection kept
    (``p_perm``, exact); for the loss itself, the F-test of log loss on log compute over
    all runs (no selection), with the re-selecting null's ``p_perm`` reported beside it.
    The power-law interval of the loss itself is the parametric bootstrap that re-selects
    the frontier in every draw (``frontier_boot``; ``runs``: (N [n], D [n]) of each run
    for its surrogate). Returns (frontier FLOPs [M], metric there [M], [FitResult per form]).
    """
    own = metric is None
    metric = loss if own else metric
    idx = frontier_indices(compute, loss)
    c, m = np.asarray(compute, float)[idx], np.asarray(metric, float)[idx]
    keep = np.isfinite(m) & (m > 0)
    _, _, p_perm = frontier_null(compute, loss, metric, n_perm, seed, reselect=own)
    p_all = _all_runs_p(compute, loss) if own else None
    fits = [frontier_fit(f, c[keep], m[keep], p_perm, p_all) for f in forms]
    if own:
        for fit in (f for f in fits if f.ok):
            _selection_interval(fit, compute, loss, runs, seed)
    return c[keep], m[keep], fits


def _selection_interval(fit: FitResult, compute, loss, runs, seed: int) -> None:
    """The power law's β interval re-selecting the frontier; a note on the other forms."""
    ci = selection_interval(compute, loss, runs, seed=seed) if fit.form == "power" else None
    if ci is None:
        note = "the interval does not include the frontier selection's own noise"
        fit.reason = f"{fit.reason}; {note}" if fit.reason else f"note: {note}"
        return
    fit.ci["beta"] = ci
    fit.interval = f"parametric bootstrap re-selecting the frontier ({N_BOOT} draws)"
    fit.band = {}


def _all_runs_p(compute, loss) -> float | None:
    c, l, _, _ = _clean(compute, loss, None)
    if len(np.unique(c)) < 3:
        return None
    o = loglog_ols(c, l)
    return o["p"] if o["slope"] < 0 else 1.0


def frontier_fit(form: str, c: np.ndarray, m: np.ndarray, p_perm: float,
                 p_all: float | None = None) -> FitResult:
    """``fit_law`` on frontier points with the frontier's trend test: ``p_all`` (the
    all-runs F-test of the selection metric) when given, else the permutation p-value."""
    fit = fit_law(form, c, m)
    fit.p_perm = None if not np.isfinite(p_perm) else p_perm
    frontier_p = p_all if p_all is not None else fit.p_perm
    if fit.status == "no-trend" and frontier_p is not None and frontier_p < ALPHA:
        return fit  # decided by fit_law's F-test on the frontier points: its p is shown
    fit.p_trend = frontier_p
    if fit.status not in ("ok", "no-trend"):
        return fit
    if fit.p_trend is None or fit.p_trend >= ALPHA:
        fit.status, fit.params, fit.ci, fit.band = "no-trend", {}, {}, {}
        fit.r2 = fit.extrapolation_error = None
        fit.reason = (f"no dependence on compute: all-runs F-test p={fit.p_trend:.3g}" if p_all
                      is not None else f"frontier exponent within the permutation null "
                      f"(p={p_perm:.3g}: compute labels shuffled among frontier runs)")
    elif p_all is not None and fit.ok and not (fit.p_perm is not None and fit.p_perm < ALPHA):
        fit.reason = (f"note: frontier selection alone gives exponents this large from these "
                      f"runs (null with compute reshuffled among all runs: p={p_perm:.3g})")
    return fit
