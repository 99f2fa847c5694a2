"""Compute-optimal allocation from the joint law (Chinchilla approach 3).

* Law: L(N, D) = E + A·N^−α + B·D^−β, the package's joint fit (``fit_joint``; α, β are
  its params ``a``, ``b``), N parameters, D training structures.
* Cost: the measured training FLOPs of the runs (counted per step during training, the
  records' ``flops``; not 6·N·D), described by C ≈ κ·N^γ·D^δ (least squares of log C on
  log N and log D over the runs). It holds for one training protocol (same epochs).
* Minimising L at fixed C:  N_opt = G·C^a, D_opt = (C/(κ·N_opt^γ))^(1/δ) with
  a = β/(δα + γβ), b = α/(δα + γβ)  (γ = δ = 1: Chinchilla's a = β/(α+β)) and
  G = [αA / (γβ'·B·κ^β')]^(1/(α + γβ')), β' = β/δ.
* Intervals (95 %): every exponent, allocation and loss is recomputed on ``n_boot``
  resampled data sets, each refitted from scratch (variable-projection grid, no warm
  start; cf. Besiroglu et al. 2024). Resampling: residual bootstrap — the fitted log
  law plus log residuals (each divided by √(1 − h_i), h_i its leverage in the law's
  Jacobian, then centred) drawn with replacement, the noise model of the fits (Gaussian
  on log L, equal variance); the cost model likewise (residuals scaled by √(n/(n−3))).
  With several runs per (N, D) the law's points are the cell means (as in ``fit_joint``)
  and the cells are resampled, weighted by their count, so an error shared by a cell's
  seeds moves the whole cell. Interval: estimate ± t(0.975, K−5)·SD of the draws (K
  cells; log scale for N, D and L).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from mlip_scaling.scaling.fit import FitResult, fit_joint, predict
from mlip_scaling.scaling.fit_cells import make_cells
from mlip_scaling.scaling.fit_nonlinear import fit_joint_vp
from mlip_scaling.scaling.metrics import SELECTION
from mlip_scaling.scaling.slices import finite

__all__ = ["fit_cost", "optimal_allocation", "allocate", "allocation_from_records",
           "allocation_lines", "COST_SCATTER_MAX"]

#: largest residual scatter (SD of log FLOPs) for which C ≈ κ·N^γ·D^δ is accepted
COST_SCATTER_MAX = 0.3
_LEVEL = 0.95


def fit_cost(n, d, flops) -> dict:
    """Cost model log C = log κ + γ log N + δ log D by least squares over the runs.

    Returns {"kappa", "gamma", "delta", "scatter" (SD of the log residuals), "resid"}."""
    n, d, c = (np.asarray(v, float) for v in (n, d, flops))
    design = np.stack([np.ones_like(n), np.log(n), np.log(d)], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.log(c), rcond=None)
    resid = np.log(c) - design @ coef
    dof = max(len(c) - 3, 1)
    return {"kappa": float(np.exp(coef[0])), "gamma": float(coef[1]), "delta": float(coef[2]),
            "scatter": float(np.sqrt((resid**2).sum() / dof)), "resid": resid}


def optimal_allocation(params: dict, cost: dict, budgets) -> dict:
    """Exponents (a, b) and, per budget C [FLOP], N_opt, D_opt and L at the optimum.

    ``params``: joint-law params (E, A, B, a=α, b=β); ``cost``: from :func:`fit_cost`.
    Returns {"a", "b", "n", "d", "loss"} (arrays over ``budgets``)."""
    alpha, beta, amp_a, amp_b = params["a"], params["b"], params["A"], params["B"]
    gamma, delta, kappa = cost["gamma"], cost["delta"], cost["kappa"]
    if min(alpha, beta, amp_a, amp_b, gamma, delta) <= 0:
        raise ValueError("the law or the cost model has a non-positive exponent or amplitude")
    bp = beta / delta
    denom = alpha + gamma * bp
    logc = np.log(np.asarray(budgets, float))
    log_g = (np.log(alpha * amp_a) - np.log(gamma * bp * amp_b) - bp * np.log(kappa)) / denom
    log_n = log_g + bp / denom * logc
    log_d = (logc - np.log(kappa) - gamma * log_n) / delta
    n_opt, d_opt = np.exp(log_n), np.exp(log_d)
    loss = predict("joint", params, n_opt, d_opt)
    return {"a": beta / (delta * alpha + gamma * beta),
            "b": alpha / (delta * alpha + gamma * beta), "n": n_opt, "d": d_opt, "loss": loss}


def _leverage(n, d, params: dict, w: np.ndarray) -> np.ndarray:
    """Leverages h_i of the joint law's weighted log fit (hat matrix of its Jacobian in E,
    A, B, α, β, rows scaled by √w; columns normalised, rank-revealing SVD)."""
    za, zb = n ** -params["a"], d ** -params["b"]
    pred = predict("joint", params, n, d)
    jac = np.stack([np.ones_like(n), za, zb, -params["A"] * np.log(n) * za,
                    -params["B"] * np.log(d) * zb], 1) / pred[:, None] * np.sqrt(w)[:, None]
    jac = jac / np.maximum(np.linalg.norm(jac, axis=0), 1e-300)
    u, sv, _ = np.linalg.svd(jac, full_matrices=False)
    u = u[:, sv > sv[0] * 1e-8]
    return np.minimum((u**2).sum(1), 0.99)


def _cells(n, d, y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, loss, weight) [K] of the points the law is fitted on: the runs themselves
    when every (N, D) has one run, else the cell means (``fit_cells``: the seeds of a cell
    share its error, so the cell, not the run, is what is resampled)."""
    if len(np.unique(np.stack([n, d], 1), axis=0)) == len(n):
        return n, d, y, np.ones(len(n))
    c = make_cells(n, y, d)
    return c.x, c.d, c.y, c.w


def _boot_draw(rng: np.random.Generator, runs: tuple, cells: tuple, params: dict,
               cost: dict, lev: np.ndarray) -> tuple[dict, dict]:
    """One resampled data set refitted from scratch: (law params, cost model). ``runs``
    (N, D) [n] of the cost model, ``cells`` (N, D, loss, weight) [K] of the law."""
    cn, cd, cy, w = cells
    fitted = np.log(predict("joint", params, cn, cd))
    resid = np.sqrt(w) * (np.log(cy) - fitted) / np.sqrt(1 - lev)  # standardised
    y_star = np.exp(fitted + rng.choice(resid - resid.mean(), size=len(cy)) / np.sqrt(w))
    n, d = runs
    k = len(n)
    c_fit = np.log(cost["kappa"]) + cost["gamma"] * np.log(n) + cost["delta"] * np.log(d)
    c_resid = cost["resid"] * np.sqrt(k / max(k - 3, 1))
    c_star = np.exp(c_fit + rng.choice(c_resid, size=k))
    law = fit_joint_vp(cn, cd, y_star, intervals=False, w=w)["params"]
    return law, fit_cost(n, d, c_star)


def _interval(estimate, draws: np.ndarray, dof: int, log: bool = False) -> list:
    """estimate ± t(0.975, dof)·SD of the bootstrap draws (axis 0; on a log scale with
    ``log``): [lo, hi], or one pair per column."""
    t = float(stats.t.ppf(0.5 + _LEVEL / 2, dof))
    est = np.log(estimate) if log else np.asarray(estimate, float)
    half = t * np.std(np.log(draws) if log else draws, axis=0, ddof=1)
    lo, hi = (np.exp(est - half), np.exp(est + half)) if log else (est - half, est + half)
    return [float(lo), float(hi)] if np.ndim(lo) == 0 else np.stack([lo, hi], 1).tolist()


def _default_budgets(flops: np.ndarray) -> np.ndarray:
    """One budget per decade from the cheapest run to 100x the most expensive."""
    lo, hi = np.floor(np.log10(flops.min())), np.ceil(np.log10(flops.max())) + 2
    return 10.0 ** np.arange(lo, hi + 1)[-7:]


def _outside(budget: float, n_opt: float, d_opt: float, c, n, d) -> bool:
    """Whether a budget or its allocation lies beyond the runs (C, N or D range)."""
    return bool(budget > c.max() or not n.min() <= n_opt <= n.max()
                or not d.min() <= d_opt <= d.max())


def _refused(reason: str, fit: FitResult | None = None) -> dict:
    return {"status": "not fitted", "reason": reason,
            "law": fit.to_dict() if fit is not None else None}


def allocate(n, d, y, flops, budgets=None, n_boot: int = 200, seed: int = 0) -> dict:
    """Compute-optimal allocation of runs (n params, d structures, loss y, training
    FLOPs) with bootstrap intervals.

    Returns {"status": "ok" | "not fitted", "reason", "law", "cost", "a", "b", "a_ci",
    "b_ci", "table": [{"budget", "n", "n_ci", "d", "d_ci", "loss", "loss_ci",
    "extrapolated"}], "n_boot", "failed_boot", "indicative"}."""
    n, d, y, c = (np.asarray(v, float) for v in (n, d, y, flops))
    good = np.isfinite(n) & np.isfinite(d) & np.isfinite(y) & np.isfinite(c) & (
        np.minimum.reduce([n, d, y, c]) > 0)
    n, d, y, c = n[good], d[good], y[good], c[good]
    if len(c) == 0:
        return _refused("no run records its parameters, structures, loss and training FLOPs")
    fit = fit_joint(n, d, y)
    if not fit.ok:
        return _refused(f"the joint law L(N, D) was not fitted: {fit.reason}", fit)
    cost = fit_cost(n, d, c)
    if cost["scatter"] > COST_SCATTER_MAX or cost["gamma"] <= 0 or cost["delta"] <= 0:
        return _refused(
            f"the runs' FLOPs are not one power law of N and D (C ~ N^{cost['gamma']:.2f}·"
            f"D^{cost['delta']:.2f}, scatter {100 * cost['scatter']:.0f} % in log): the "
            "allocation needs runs of one training protocol (same epochs)", fit)
    if min(fit.params["A"], fit.params["B"]) <= 0:
        return _refused("the fitted law has no N term or no D term (amplitude 0)", fit)
    budgets = _default_budgets(c) if budgets is None else np.asarray(budgets, float)
    best = optimal_allocation(fit.params, cost, budgets)
    rng = np.random.default_rng(seed)
    cells = _cells(n, d, y)
    lev = _leverage(cells[0], cells[1], fit.params, cells[3])
    draws, failed = [], 0
    for _ in range(n_boot):
        try:
            law, cost_star = _boot_draw(rng, (n, d), cells, fit.params, cost, lev)
            draws.append(optimal_allocation(law, cost_star, budgets))
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            failed += 1
    if len(draws) < max(20, n_boot // 2):
        return _refused(f"{failed} of {n_boot} bootstrap refits failed", fit)
    stack = {k: np.array([dr[k] for dr in draws]) for k in ("a", "b", "n", "d", "loss")}
    dof = len(cells[2]) - 5  # cells, not runs
    ci = {k: _interval(best[k], v, dof, log=k not in ("a", "b")) for k, v in stack.items()}
    table = [{"budget": float(budgets[i]), "n": float(best["n"][i]), "n_ci": ci["n"][i],
              "d": float(best["d"][i]), "d_ci": ci["d"][i], "loss": float(best["loss"][i]),
              "loss_ci": ci["loss"][i], "extrapolated": _outside(budgets[i], best["n"][i],
                                                                 best["d"][i], c, n, d)}
             for i in range(len(budgets))]
    return {"status": "ok", "reason": "", "law": fit.to_dict(),
            "cost": {k: v for k, v in cost.items() if k != "resid"},
            "a": float(best["a"]), "b": float(best["b"]), "a_ci": ci["a"], "b_ci": ci["b"],
            "table": table, "n_boot": n_boot, "failed_boot": failed,
            "indicative": fit.indicative}


def allocation_from_records(records: list[dict], metric: str = SELECTION,
                            budgets=None, n_boot: int = 200, seed: int = 0) -> dict:
    """:func:`allocate` on usable evaluation records (one family): n_params, n_train,
    ``metric`` and flops of each run."""
    pts = [(r.get("n_params"), r.get("n_train"), (r.get("metrics") or {}).get(metric),
            r.get("flops")) for r in records]
    pts = [p for p in pts if all(finite(v) for v in p)]
    if not pts:
        return _refused("no run records its parameters, structures, "
                        f"{metric} and training FLOPs")
    n, d, y, c = (np.asarray(v, float) for v in zip(*pts))
    return allocate(n, d, y, c, budgets, n_boot, seed)


def allocation_lines(result: dict) -> tuple[str, list[list[str]]]:
    """(summary line, table cells) of an allocation result for the terminal and HTML."""
    if result["status"] != "ok":
        return f"compute-optimal allocation not fitted: {result['reason']}", []
    cost = result["cost"]
    head = (f"N_opt ~ C^{result['a']:.3f} [{result['a_ci'][0]:.3f}, {result['a_ci'][1]:.3f}],"
            f" D_opt ~ C^{result['b']:.3f} [{result['b_ci'][0]:.3f}, {result['b_ci'][1]:.3f}]"
            f" (95 %, {result['n_boot']} bootstrap refits from scratch); measured cost "
            f"C = {cost['kappa']:.3g}·N^{cost['gamma']:.3f}·D^{cost['delta']:.3f} FLOP "
            f"(scatter {100 * cost['scatter']:.1f} %)"
            + (f"; {result['failed_boot']} refits without an N or D term left out"
               if result["failed_boot"] else "")
            + ("; indicative (<= 4 sizes)" if result["indicative"] else ""))
    cells = [[f"{r['budget']:.3g}", f"{r['n']:.3g}", _range(r["n_ci"]), f"{r['d']:.3g}",
              _range(r["d_ci"]), f"{r['loss']:.4g}", _range(r["loss_ci"], "{:.4g}"),
              "extrapolated" if r["extrapolated"] else "within the runs' C, N, D"]
             for r in result["table"]]
    return head, cells


def _range(ci, fmt: str = "{:.3g}") -> str:
    return f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"
