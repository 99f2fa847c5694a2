"""Checks beside a fitted law: linearised standard errors, the leave-largest-out test and
collinear axes.

* Standard errors: from the Jacobian J of the log prediction at the fitted parameters,
  Cov = s²·(JᵀWJ)⁺ with s² the weighted residual variance (exact for the power law).
* Leave-largest-out: the law is refitted from scratch without the largest cell (largest
  N·D for the joint form) and predicts it; the error in log L is compared with its
  prediction standard error s²_(−1)·(1/w₀ + gᵀ(JᵀWJ)⁺g) (g the gradient of the log
  prediction there): a t-test with the reduced fit's d.o.f. (exact for the power law).
  The row is flagged when p < 0.05: the largest size is further from the law than the
  noise explains (a bend, a floor, a change of regime).
* Trend: the power law's log-log slope against a constant (F-test), the joint form's
  partial F-tests on log N and log D; a rise or a constant series is no trend.
* Collinear axes: the correlation of (log N, log D) over the cells; at |r| >= 0.99 the
  two exponents cannot be separated, and neither when the partial tests fail at
  |r| >= 0.9 while the loss falls along the runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from mlip_scaling.scaling.fit_cells import Cells, loglog_ols, wls

__all__ = ["jacobian", "linear_se", "extrapolation_p", "log_correlation", "trend_p"]

COLLINEAR_R = 0.99
NEAR_COLLINEAR_R = 0.9


def jacobian(logpred: Callable[[dict], np.ndarray], params: dict[str, float],
             free: list[str]) -> np.ndarray:
    """[n, len(free)] central-difference derivatives of the log prediction."""
    cols = []
    for k in free:
        h = 1e-6 * max(abs(params[k]), 1e-3)
        up, dn = dict(params), dict(params)
        up[k] += h
        dn[k] -= h
        cols.append((logpred(up) - logpred(dn)) / (2 * h))
    return np.stack(cols, axis=1)


def linear_se(jac: np.ndarray, w: np.ndarray, s2: float) -> np.ndarray:
    """Standard errors [p] of the parameters: sqrt(diag(s²·(JᵀWJ)⁺))."""
    cov = np.linalg.pinv(jac.T @ (jac * w[:, None]))
    return np.sqrt(np.maximum(np.diag(cov) * s2, 0.0))


def extrapolation_p(resid_held: float, w_held: float, grad: np.ndarray, jac: np.ndarray,
                    w: np.ndarray, rss: float) -> float | None:
    """Two-sided p of the held-out cell's log error ``resid_held`` given the reduced fit
    (Jacobian ``jac`` [m, p] at its m cells, weights ``w``, weighted RSS ``rss``) and the
    gradient ``grad`` [p] of the log prediction at the held-out size."""
    dof = len(w) - jac.shape[1]
    if dof < 1:
        return None
    s2 = rss / dof
    cov = np.linalg.pinv(jac.T @ (jac * w[:, None]))
    var = s2 * (1.0 / w_held + float(grad @ cov @ grad))
    if not var > 0:
        return 0.0 if abs(resid_held) > 0 else 1.0
    return float(2 * stats.t.sf(abs(resid_held) / np.sqrt(var), dof))


def log_correlation(n: np.ndarray, d: np.ndarray) -> float:
    """Correlation of log N and log D over the cells (0 when either is constant)."""
    a, b = np.log(n), np.log(d)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def trend_p(form: str, c: Cells, alpha: float) -> tuple[float, str]:
    """(p of the test against no dependence, why there is no law or ""): the log-log slope's
    F-test (a rise or a constant series is no trend); the joint form's partial tests."""
    if form == "joint":
        return _joint_trend(c, alpha)
    if np.ptp(c.y) == 0:  # e.g. a relaxation that never moves: no scatter, no test
        return 1.0, f"constant: every value is {c.y[0]:.3g}"
    o = loglog_ols(c.x, c.y, c.w)
    if o["slope"] >= 0:
        verb = "increases" if o["p"] < alpha else "does not decrease"
        return o["p"], f"loss {verb} (log-log slope {o['slope']:.3g}, p={o['p']:.3g})"
    if o["p"] >= alpha:
        return o["p"], f"no significant trend (F-test against a constant: p={o['p']:.3g})"
    return o["p"], ""


def _joint_trend(c: Cells, alpha: float) -> tuple[float, str]:
    """Weighted partial F-tests of log L on (1, log N, log D): (larger p, reason)."""
    design = np.stack([np.ones_like(c.x), np.log(c.x), np.log(c.d)], axis=1)
    full = wls(design, np.log(c.y), c.w)
    pvals = []
    for k in (1, 2):
        rss0 = wls(design[:, [0, 3 - k]], np.log(c.y), c.w)["rss"]
        fstat = (rss0 - full["rss"]) / full["s2"] if full["rss"] > 0 else np.inf
        p = float(stats.f.sf(fstat, 1, full["dof"])) if np.isfinite(fstat) else 0.0
        pvals.append(p if full["coef"][k] < 0 else 1.0)
    missing = [axis for axis, p in zip("ND", pvals) if p >= alpha]
    why = "" if not missing else (
        f"the joint law needs a significant decrease with both N and D; none with "
        f"{' or '.join(missing)} (p: N {pvals[0]:.3g}, D {pvals[1]:.3g})")
    return max(pvals), why
