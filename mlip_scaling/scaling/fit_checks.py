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
* Collinear axes: the correlation of (log N, log D) over the cells; at |r| >= 0.99 the
  two exponents cannot be separated, and neither when the partial tests fail at
  |r| >= 0.9 while the loss falls along the runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

__all__ = ["jacobian", "linear_se", "extrapolation_p", "log_correlation"]

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
