"""Smoothly broken power law with one break, and its nested test against the pure law.

L = a·N^−b1·(1 + (N/N_b)^(1/s))^(−(b2−b1)·s) (Caballero et al. 2022, one break): exponent
b1 well below the break N_b, b2 well above; s (in ln N) sets how sharp the bend is and is
held fixed (``SMOOTHNESS``): with a handful of sizes it cannot be resolved.

* Fit: with u = ln N and the break u_b = ln N_b fixed, log L = c − b1·u − (b2 − b1)·s·
  softplus((u − u_b)/s) is linear in (c, b1, b2 − b1): weighted least squares at every
  u_b of a fine grid over the data range (the break inside the data), polished by Brent.
* Nested test against the pure power law (b2 = b1): the F statistic maximised over u_b
  has no F distribution (u_b does not exist under the null), so its p-value is the exact
  Monte-Carlo null of that maximum: under a pure power law with Gaussian log errors the
  statistic depends only on the sizes and weights, drawn ``N_NULL`` times (fixed seed).
* Intervals: profile likelihood with 4 parameters, {θ : RSS_prof(θ) ≤ RSS_min·(1 +
  F₁,ν/ν)}, ν = K − 4. For b1, b2 the profile at each u_b is exactly quadratic (linear
  model), minimised over the grid; for N_b it is the grid's RSS(u_b). An end of the N_b
  set at the edge of the data is open (0 or inf: the break may lie outside the sizes).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import f as f_dist

from mlip_scaling.scaling.fit_cells import wls

__all__ = ["fit_broken", "broken_predict", "SMOOTHNESS", "N_NULL"]

SMOOTHNESS = 0.5  # s, in ln N
N_NULL = 2000  # Monte-Carlo draws of the nested test's null
_GRID = 160


def _softplus(t: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, t)


def broken_predict(params: dict[str, float], x: np.ndarray) -> np.ndarray:
    """L at sizes ``x`` [n] for params a, b1, b2, Nb, s."""
    x = np.asarray(x, float)
    p = params
    return p["a"] * x ** -p["b1"] * np.exp(-(p["b2"] - p["b1"]) * p["s"] * _softplus(
        np.log(x / p["Nb"]) / p["s"]))


def _design(u: np.ndarray, ub: float, s: float) -> np.ndarray:
    """Columns (1, −u, −s·softplus((u − u_b)/s)) for coefficients (c, b1, b2 − b1)."""
    return np.stack([np.ones_like(u), -u, -s * _softplus((u - ub) / s)], axis=1)


def _null_p(u: np.ndarray, w: np.ndarray, grid: np.ndarray, s: float, f_obs: float) -> float:
    """Monte-Carlo p of the sup-F statistic under the pure power law (whitened draws)."""
    sw = np.sqrt(w)
    k, dof = len(u), len(u) - 4
    rng = np.random.default_rng(0)
    e = rng.normal(size=(N_NULL, k))
    x0 = np.stack([np.ones_like(u), -u], axis=1) * sw[:, None]
    r0 = e - e @ (x0 @ np.linalg.pinv(x0)).T
    rss0 = (r0**2).sum(1)
    best = np.zeros(N_NULL)
    for ub in grid:
        x1 = _design(u, ub, s) * sw[:, None]
        r1 = e - e @ (x1 @ np.linalg.pinv(x1)).T
        rss1 = (r1**2).sum(1)
        best = np.maximum(best, (rss0 - rss1) / np.maximum(rss1 / dof, 1e-300))
    return float((1 + np.sum(best >= f_obs)) / (1 + N_NULL))


def _profile_ends(theta: np.ndarray, var: np.ndarray, rss: np.ndarray, thr: float
                  ) -> list[float]:
    """Ends of {θ : min over u_b of RSS(u_b) + (θ − θ̂(u_b))²/V(u_b) ≤ thr} (hull over the
    grid of u_b): ``theta``, ``var``, ``rss`` [G]."""
    inside = rss <= thr
    half = np.sqrt((thr - rss[inside]) * var[inside])
    if not inside.any():
        return [float("nan"), float("nan")]
    return [float((theta[inside] - half).min()), float((theta[inside] + half).max())]


def _grid_fits(u: np.ndarray, v: np.ndarray, w: np.ndarray, ubs: np.ndarray, s: float
               ) -> dict:
    """Weighted least squares at every break u_b [G]: coef [G, 3] (c, b1, b2 − b1),
    rss [G], (b1, b2) estimates [G, 2] and their unscaled variances [G, 2]."""
    xs = np.stack([_design(u, ub, s) for ub in ubs])  # [G, K, 3]
    xw = xs * w[None, :, None]
    gram = xs.transpose(0, 2, 1) @ xw
    coef = np.linalg.solve(gram, (xw.transpose(0, 2, 1) @ v)[..., None])[..., 0]
    rss = (w * (v - (xs @ coef[..., None])[..., 0]) ** 2).sum(-1)
    cov = np.linalg.inv(gram)
    tr = np.array([[0, 1, 0], [0, 1, 1]])
    cov_b = tr @ cov @ tr.T
    return {"coef": coef, "rss": rss, "theta": coef @ tr.T,
            "var": np.stack([cov_b[:, 0, 0], cov_b[:, 1, 1]], axis=1)}


def fit_broken(x: np.ndarray, y: np.ndarray, w: np.ndarray, s: float = SMOOTHNESS,
               intervals: bool = True) -> dict:
    """Broken power law on cell means x [K], y [K] with weights w [K]: {"params", "ci",
    "rss", "p_break", "rss_power", "dof"}."""
    u, v = np.log(x), np.log(y)
    grid = np.linspace(u.min(), u.max(), _GRID)
    fits = _grid_fits(u, v, w, grid, s)
    rss = fits["rss"]
    k = int(np.argmin(rss))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = minimize_scalar(lambda t: float(_grid_fits(u, v, w, np.array([t]), s)["rss"][0]),
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    ub = float(res.x) if res.fun < rss[k] else float(grid[k])
    best = _grid_fits(u, v, w, np.array([ub]), s)
    best = {key: val[0] for key, val in best.items()}
    rss_min, dof = float(best["rss"]), len(u) - 4
    rss_power = wls(np.stack([np.ones_like(u), -u], axis=1), v, w)["rss"]
    c, b1, db = best["coef"]
    params = {"a": float(np.exp(c)), "b1": float(b1), "b2": float(b1 + db),
              "Nb": float(np.exp(ub)), "s": float(s)}
    out = {"params": params, "rss": rss_min, "rss_power": rss_power, "ci": {},
           "dof": dof, "p_break": None}
    if not intervals or dof < 1:
        return out
    coarse = rss[::4].min()  # the statistic over the grid the null is drawn on
    f_obs = (rss_power - coarse) / max(coarse / dof, 1e-300)
    out["p_break"] = _null_p(u, w, grid[::4], s, f_obs)
    thr = rss_min * (1 + f_dist.ppf(0.95, 1, dof) / dof)
    theta = np.vstack([fits["theta"], best["theta"]])
    var = np.vstack([fits["var"], best["var"]])
    all_rss = np.append(rss, rss_min)
    inside = grid[rss <= thr]
    nb_lo = 0.0 if not len(inside) or inside.min() <= grid[0] else float(np.exp(inside.min()))
    nb_hi = np.inf if not len(inside) or inside.max() >= grid[-1] else float(
        np.exp(inside.max()))
    out["ci"] = {"b1": _profile_ends(theta[:, 0], var[:, 0], all_rss, thr),
                 "b2": _profile_ends(theta[:, 1], var[:, 1], all_rss, thr),
                 "Nb": [min(nb_lo, params["Nb"]), max(nb_hi, params["Nb"])]}
    return out
