"""Study planning: the smallest exponent a grid can detect, and the grid that resolves one.

Noise model of one metric (natural log of the value, i.e. relative errors): a run at size
x_i (seed j) gives log m_ij = c − β·log x_i + η_i + ε_ij + e_ij with

* η_i ~ N(0, σ_shared²): shared by every seed of a size (same data subset, lack of fit);
  more seeds do not reduce it;
* ε_ij ~ N(0, σ_run²): seed-to-seed scatter of training;
* e_ij ~ N(0, σ_eval(x_i)²·n_ref/n): evaluation noise of one model's value, measured as
  the relative SE at n_ref evaluations (relaxations, MD steps) and scaled as 1/√n for n
  per model; σ_eval(x) = σ_eval·(x/x_ref)^slope (unequal noise along the axis).

The fit is a weighted power law on the K per-size means (variance v_i = σ_shared² +
(σ_run² + σ_eval,i²·n_ref/n)/s for s seeds; equal weights when the v_i are equal), with
the scale estimated from its residuals (ν = K − 2): SE(β̂)² = 1/Σ w_i (u_i − ū_w)²,
u = log x, w = 1/v. The trend test rejects when β̂/ŜE > t(0.975, ν) (the package's
F-test, decreasing); its power at β is the noncentral-t probability, and the minimal
detectable exponent (MDE) is the β with power 0.8 at α = 0.05. A grid *resolves* β to a
half-width h when the trend test rejects and the 95 % half-width t·ŜE <= h; its
probability is an integral over ŜE² = SE²·χ²_ν/ν (β̂ independent of ŜE).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize, stats

__all__ = ["Noise", "Grid", "size_variances", "slope_se", "detectable_exponent",
           "resolve_probability", "grid_summary", "plan_grid", "log_sizes", "estimate_noise",
           "row_detectable", "ALPHA", "POWER",
           "TARGET_RATE"]

ALPHA, POWER, TARGET_RATE = 0.05, 0.8, 0.9
#: evaluation counts a grid sets: relaxations per model, MD steps per model
COUNT_KINDS = ("relaxations", "md_steps")


@dataclass(frozen=True)
class Noise:
    """Noise of one metric's log value (see the module docstring); ``count_kind`` names
    the grid count that scales ``sigma_eval`` ("" when nothing does)."""

    metric: str
    sigma_run: float = 0.0
    sigma_eval: float = 0.0
    count_ref: int = 1
    count_kind: str = ""
    sigma_shared: float = 0.0
    eval_slope: float = 0.0
    size_ref: float = 1.0
    note: str = ""


@dataclass(frozen=True)
class Grid:
    """A planned study: sizes along the axis, seeds per size, evaluations per model."""

    sizes: tuple[float, ...]
    seeds: int = 1
    relaxations: int = 0
    md_steps: int = 0

    def count(self, kind: str, default: int) -> int:
        """Evaluations per model of ``kind`` (``default`` when the grid leaves it unset)."""
        value = getattr(self, kind, 0) if kind in COUNT_KINDS else 0
        return int(value) if value else int(default)


def log_sizes(low: float, high: float, count: int) -> tuple[float, ...]:
    """``count`` sizes evenly spaced in log between ``low`` and ``high``."""
    return tuple(float(v) for v in np.logspace(np.log10(low), np.log10(high), count))


def size_variances(noise: Noise, grid: Grid) -> np.ndarray:
    """Variance of the log per-size mean at each size of ``grid`` [K]."""
    x = np.asarray(grid.sizes, float)
    count = grid.count(noise.count_kind, noise.count_ref)
    eval_sd = noise.sigma_eval * (x / noise.size_ref) ** noise.eval_slope
    per_run = noise.sigma_run**2 + eval_sd**2 * noise.count_ref / max(count, 1)
    return noise.sigma_shared**2 + per_run / grid.seeds


def slope_se(sizes, variances) -> float:
    """SE of the weighted log-log slope with per-size variances (known up to a scale)."""
    u, w = np.log(np.asarray(sizes, float)), 1.0 / np.asarray(variances, float)
    ubar = (w * u).sum() / w.sum()
    return float(1.0 / np.sqrt((w * (u - ubar) ** 2).sum()))


def _lambda_star(dof: int, alpha: float, power: float) -> float:
    """Noncentrality at which the one-sided-decrease t-test at level α (two-sided
    critical value) has the given power."""
    tcrit = stats.t.ppf(1 - alpha / 2, dof)
    return float(optimize.brentq(lambda lam: stats.nct.sf(tcrit, dof, lam) - power,
                                 0.0, 200.0))


def detectable_exponent(sizes, variances, alpha: float = ALPHA, power: float = POWER,
                        dof: int | None = None) -> float:
    """Minimal detectable exponent: the β that the trend test detects with ``power``.

    ``dof``: residual degrees of freedom (default K − 2 for the fit on K size means)."""
    dof = len(sizes) - 2 if dof is None else dof
    if dof < 1:
        return float("inf")
    return _lambda_star(dof, alpha, power) * slope_se(sizes, variances)


_Q = np.linspace(0.0005, 0.9995, 1000)  # probability grid of the χ² integral


def resolve_probability(beta: float, half_width: float, sizes, variances,
                        alpha: float = ALPHA) -> float:
    """P(trend test rejects and the 95 % half-width <= ``half_width``) at exponent β."""
    dof = len(sizes) - 2
    if dof < 1:
        return 0.0
    se = slope_se(sizes, variances)
    t = stats.t.ppf(1 - alpha / 2, dof)
    se_hat = se * np.sqrt(stats.chi2.ppf(_Q, dof) / dof)
    ok = stats.norm.sf((t * se_hat - beta) / se)
    return float(np.mean(ok * (t * se_hat <= half_width)))


def grid_summary(noise: Noise, grid: Grid, beta: float | None = None,
                 half_width: float | None = None) -> dict:
    """MDE of ``noise``'s metric on ``grid`` and (given β, h) the resolve probability."""
    var = size_variances(noise, grid)
    out = {"metric": noise.metric, "mde": detectable_exponent(grid.sizes, var),
           "se": slope_se(grid.sizes, var) if len(grid.sizes) > 1 else float("inf"),
           "count_kind": noise.count_kind,
           "count": grid.count(noise.count_kind, noise.count_ref) if noise.count_kind else None}
    if beta is not None and half_width is not None:
        out["p_resolve"] = resolve_probability(beta, half_width, grid.sizes, var)
    return out


def _candidates(noise: Noise, min_sizes: int, max_sizes: int, max_seeds: int,
                max_count_factor: int):
    counts = [noise.count_ref]
    if noise.count_kind and noise.sigma_eval > 0:
        counts = sorted({max(1, int(round(noise.count_ref * 2.0**j)))
                         for j in range(-3, int(np.log2(max_count_factor)) + 1)})
    return itertools.product(range(min_sizes, max_sizes + 1), range(1, max_seeds + 1), counts)


def plan_grid(noise: Noise, beta: float, half_width: float, low: float, high: float,
              target: float = TARGET_RATE, max_sizes: int = 12, max_seeds: int = 8,
              max_count_factor: int = 64, min_sizes: int = 3) -> dict:
    """The cheapest grid over sizes in [low, high] that resolves β to ``half_width`` with
    probability >= ``target``: fewest trained runs (sizes × seeds), then fewest
    evaluations per model (relaxations or MD steps, from count_ref/8 to
    count_ref·``max_count_factor`` in factors of 2). ``min_sizes`` = ``max_sizes`` and
    ``max_seeds`` = 1 pin the sizes and leave the evaluation count to choose.
    Returns {"status": "ok" | "unreachable", "grid", "p_resolve", "mde", "runs",
    "reason"}."""
    best = None
    for k, s, n in _candidates(noise, min_sizes, max_sizes, max_seeds, max_count_factor):
        grid = Grid(log_sizes(low, high, k), s, **_counts(noise.count_kind, n))
        p = resolve_probability(beta, half_width, grid.sizes, size_variances(noise, grid))
        key = (k * s, n, k)
        if p >= target and (best is None or key < best[0]):
            best = (key, grid, p)
    if best is None:
        widest = Grid(log_sizes(low, high, max_sizes), max_seeds,
                      **_counts(noise.count_kind, noise.count_ref * max_count_factor))
        p = resolve_probability(beta, half_width, widest.sizes, size_variances(noise, widest))
        return {"status": "unreachable", "grid": widest, "p_resolve": p, "runs": None,
                "mde": grid_summary(noise, widest)["mde"],
                "reason": f"even {max_sizes} sizes x {max_seeds} seed(s) resolve beta={beta:g} "
                          f"to +-{half_width:g} in only {100 * p:.0f} % (need "
                          f"{100 * target:.0f} %): widen the size range"}
    _, grid, p = best
    return {"status": "ok", "grid": grid, "p_resolve": p, "runs": len(grid.sizes) * grid.seeds,
            "mde": grid_summary(noise, grid)["mde"], "reason": ""}


def _counts(kind: str, n: int) -> dict:
    return {kind: int(n)} if kind in COUNT_KINDS else {}



def _ols_resid(u: np.ndarray, v: np.ndarray) -> tuple[float, int]:
    """(residual variance, d.o.f.) of the least-squares line of v on u."""
    design = np.stack([np.ones_like(u), u], 1)
    coef, *_ = np.linalg.lstsq(design, v, rcond=None)
    dof = len(v) - 2
    return float(((v - design @ coef) ** 2).sum() / dof), dof


def _eval_noise(x: np.ndarray, rel_se: np.ndarray) -> tuple[float, float, float]:
    """(σ_eval at x_ref, slope of log σ_eval on log x, x_ref) from per-run relative SEs."""
    good = np.isfinite(rel_se) & (rel_se > 0)
    if not good.any():
        return 0.0, 0.0, 1.0
    u, v = np.log(x[good]), np.log(rel_se[good])
    x_ref = float(np.exp(u.mean()))
    slope = float(np.polyfit(u, v, 1)[0]) if len(np.unique(u)) >= 3 else 0.0
    return float(np.exp(v.mean())), slope, x_ref


def estimate_noise(metric: str, x, y, rel_se=None, count_ref: int = 1,
                   count_kind: str = "") -> Noise:
    """Noise of one metric from pilot runs: sizes x, values y and (optional) each run's
    relative evaluation SE measured at ``count_ref`` evaluations.

    With replicate seeds the scatter is split: within a size (σ_run, less the evaluation
    noise) and of the size means around the power law (σ_shared, less what σ_run and the
    evaluation noise explain). Without replicates every scatter beyond the evaluation
    noise counts as shared (more seeds are assumed not to help: the cautious choice)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rel = np.full(len(x), np.nan) if rel_se is None else np.asarray(rel_se, float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y, rel = x[keep], y[keep], rel[keep]
    sizes = np.unique(x)
    if len(sizes) < 3:
        raise ValueError(f"{metric}: {len(sizes)} distinct sizes in the pilot (need >= 3)")
    sig_e, slope, x_ref = _eval_noise(x, rel)
    eval_var = (sig_e * (x / x_ref) ** slope) ** 2
    u, v = np.log(x), np.log(y)
    groups = [np.flatnonzero(x == s) for s in sizes]
    within_dof = sum(len(g) - 1 for g in groups)
    base = Noise(metric, 0.0, sig_e, int(count_ref), count_kind if sig_e > 0 else "",
                 0.0, slope, x_ref)
    if within_dof == 0:
        total, _ = _ols_resid(u, v)
        return replace(base, sigma_shared=float(np.sqrt(max(total - eval_var.mean(), 0.0))),
                       note="no replicate seeds in the pilot: scatter beyond the evaluation "
                            "noise counted as shared by a size")
    within = sum(((v[g] - v[g].mean()) ** 2).sum() for g in groups) / within_dof
    run_var = max(within - eval_var.mean(), 0.0)
    means = np.array([v[g].mean() for g in groups])
    between, _ = _ols_resid(np.log(sizes), means)
    explained = np.mean([(run_var + eval_var[g].mean()) / len(g) for g in groups])
    return replace(base, sigma_run=float(np.sqrt(run_var)),
                   sigma_shared=float(np.sqrt(max(between - explained, 0.0))),
                   note=f"{within_dof} replicate degree(s) of freedom in the pilot")


def row_detectable(row: dict, alpha: float = ALPHA, power: float = POWER):
    """Smallest exponent the design of a fitted report row could detect (power 0.8 at
    α = 0.05), from its own points and residual scatter: a float for the one-axis forms,
    {"a": ..., "b": ...} for the joint law (partial slopes on log N and log D); None
    with too few points."""
    x, y = np.asarray(row.get("x") or [], float), np.asarray(row.get("y") or [], float)
    good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if row.get("form") == "joint":
        d = np.asarray(row.get("d") or [], float)
        if len(d) != len(x):
            return None
        good &= np.isfinite(d) & (d > 0)
        return _joint_mde(np.log(x[good]), np.log(d[good]), np.log(y[good]), alpha, power)
    u, v = np.log(x[good]), np.log(y[good])
    if len(np.unique(u)) < 3:
        return None
    var, dof = _ols_resid(u, v)
    se = np.sqrt(var / ((u - u.mean()) ** 2).sum())
    return float(_lambda_star(dof, alpha, power) * se)


def _joint_mde(un, ud, v, alpha: float, power: float) -> dict | None:
    design = np.stack([np.ones_like(un), un, ud], 1)
    dof = len(v) - 3
    if dof < 1 or np.linalg.matrix_rank(design) < 3:
        return None
    coef, *_ = np.linalg.lstsq(design, v, rcond=None)
    var = ((v - design @ coef) ** 2).sum() / dof
    cov = var * np.linalg.inv(design.T @ design)
    lam = _lambda_star(dof, alpha, power)
    return {"a": float(lam * np.sqrt(cov[1, 1])), "b": float(lam * np.sqrt(cov[2, 2]))}
