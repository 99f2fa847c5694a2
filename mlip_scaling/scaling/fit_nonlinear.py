"""Floor and joint laws by variable projection, with profile-likelihood intervals.

Both laws are sums of non-negative amplitudes times fixed columns once the exponents are
fixed: floor L = E + A·N^−b (columns 1, N^−b), joint L = E + A·N^−a + B·D^−b (columns 1,
N^−a, D^−b). The loss is the (weighted) sum of squared log residuals (Gaussian noise on log L; the
weights are the cells' inverse variances, see ``fit_cells``).

* Fit: for every exponent on a grid (b ∈ [0.01, 4]; (a, b) ∈ [0.01, 2.5]²) the amplitudes
  are profiled out exactly (non-negative least squares of relative residuals, then
  Gauss-Newton steps on the log residuals, each step an exact NNLS by active-set
  enumeration), so the grid is a multistart of the whole problem (Chinchilla approach 3
  by variable projection). The best grid point is polished with bounded trust-region least
  squares on all parameters with the analytic Jacobian. Every fit starts from scratch.
* Intervals: profile likelihood. With RSS_min the minimum and ν = n − p residual degrees
  of freedom, the 95 % set of an exponent θ is {θ : RSS_prof(θ) ≤ RSS_min·(1 + F₁,ν/ν)}
  (F₁,ν the 95 % quantile of F(1, ν)), the small-sample form of the likelihood-ratio
  interval. The grid brackets each end, which is then found by walking outwards on the
  exact profile and root finding; an end not reached inside the grid is infinite (upper)
  or the natural bound 0 (lower). The floor E gets the same treatment on a grid of
  E ∈ [0, min L) (upper end capped at min L).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import brentq, least_squares, minimize_scalar
from scipy.stats import f as f_dist

__all__ = ["fit_floor_vp", "fit_joint_vp", "profile_limit", "B_GRID", "JOINT_GRID"]

B_GRID = np.linspace(0.01, 4.0, 80)
JOINT_GRID = np.linspace(0.01, 2.5, 42)
_E_FRACTIONS = np.concatenate([np.linspace(0.0, 0.9, 19), np.linspace(0.92, 0.9995, 12)])
_GN_STEPS = 4
_TINY = 1e-300


def _nnls_batch(M: np.ndarray, t: np.ndarray) -> np.ndarray:
    """argmin_c ||M c − t||² with c >= 0, batched: M [..., n, k], t [..., n] -> [..., k].

    Exact for small k: the optimum is the unconstrained optimum on its own support, so the
    best feasible solution over all supports is the answer."""
    k = M.shape[-1]
    best_c = np.zeros(M.shape[:-2] + (k,))
    best_f = np.full(M.shape[:-2], np.inf)
    for mask in itertools.product((False, True), repeat=k):
        cols = [i for i in range(k) if mask[i]]
        if not cols:
            continue
        ms = M[..., cols]
        gram = ms.swapaxes(-1, -2) @ ms
        gram = gram + 1e-12 * np.trace(gram, axis1=-2, axis2=-1)[..., None, None] * np.eye(
            len(cols))
        rhs = (ms.swapaxes(-1, -2) @ t[..., None])[..., 0]
        coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
        full = np.zeros_like(best_c)
        full[..., cols] = coef
        obj = (((M @ full[..., None])[..., 0] - t) ** 2).sum(-1)
        better = (coef >= 0).all(-1) & (obj < best_f)
        best_c = np.where(better[..., None], full, best_c)
        best_f = np.where(better, obj, best_f)
    return best_c


def _log_rss(Z: np.ndarray, c: np.ndarray, ly: np.ndarray, w: np.ndarray) -> np.ndarray:
    pred = np.maximum((Z @ c[..., None])[..., 0], _TINY)
    return (w * (np.log(pred) - ly) ** 2).sum(-1)


def profile_amplitudes(Z: np.ndarray, ly: np.ndarray, w: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative amplitudes c minimising Σ w·(log(Z c) − log y)² for fixed columns.

    Z [..., n, k] positive columns, ly [..., n] log losses (broadcastable), w [n] weights
    (default 1). Returns (c [..., k], weighted RSS [...])."""
    Z, ly = np.broadcast_arrays(Z, ly[..., None])
    ly = ly[..., 0]
    w = np.ones(ly.shape[-1]) if w is None else np.asarray(w, float)
    sw = np.sqrt(w)
    c = _nnls_batch(Z * (np.exp(-ly) * sw)[..., None], np.broadcast_to(sw, ly.shape))
    rss = _log_rss(Z, c, ly, w)
    for _ in range(_GN_STEPS):
        pred = np.maximum((Z @ c[..., None])[..., 0], _TINY)
        jac = Z / pred[..., None]
        target = (jac @ c[..., None])[..., 0] - (np.log(pred) - ly)
        c_new = _nnls_batch(jac * sw[:, None], target * sw)
        rss_new = _log_rss(Z, c_new, ly, w)
        better = rss_new < rss * (1 - 1e-12)
        if not better.any():
            break
        c = np.where(better[..., None], c_new, c)
        rss = np.where(better, rss_new, rss)
    return c, rss


def _min_1d(prof, grid: np.ndarray) -> tuple[float, float]:
    """Minimum of a vectorised profile ``prof(values) -> RSS`` over ``grid`` (polished by
    bounded Brent search between the neighbours of the best grid point)."""
    vals = prof(grid)
    k = int(np.argmin(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = minimize_scalar(lambda t: float(prof(np.array([t]))[0]), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-5})
    return (float(res.x), float(res.fun)) if res.fun < vals[k] else (float(grid[k]),
                                                                      float(vals[k]))


def profile_limit(prof, grid: np.ndarray, best: float, thr: float,
                  lower_bound: float = 0.0, vals: np.ndarray | None = None) -> list[float]:
    """Ends of {θ : prof(θ) <= thr}: from the outermost grid points inside, walked outwards
    while the exact profile stays inside, then the crossing by root finding; an upper end
    not reached inside the grid is inf, a lower end not reached is ``lower_bound``.
    ``vals``: approximate profile values on the grid (only to start the walk)."""
    vals = prof(grid) if vals is None else vals
    inside = np.flatnonzero(vals <= thr)
    first = min(best, grid[inside[0]]) if len(inside) else best
    last = max(best, grid[inside[-1]]) if len(inside) else best
    lo = _walk(prof, grid, first, thr, -1)
    hi = _walk(prof, grid, last, thr, +1)
    return [float(lower_bound if lo is None else lo), float(np.inf if hi is None else hi)]


def _walk(prof, grid: np.ndarray, inner: float, thr: float, step: int) -> float | None:
    """Crossing beyond ``inner`` in direction ``step``; None when the grid ends inside."""
    cand = np.flatnonzero(grid < inner)[::-1] if step < 0 else np.flatnonzero(grid > inner)
    for k in cand:
        if float(prof(np.array([grid[k]]))[0]) > thr:
            return _root(prof, grid[k], inner, thr)
        inner = grid[k]
    return None


def _root(prof, a: float, b: float, thr: float) -> float:
    def g(t):
        return float(prof(np.array([t]))[0]) - thr

    ga, gb = g(a), g(b)
    if ga * gb > 0:  # no sign change (rounding at the optimum): the grid point is the end
        return float(a if abs(ga) < abs(gb) else b)
    return float(brentq(g, a, b, xtol=1e-4))


def threshold(rss_min: float, dof: int, level: float = 0.95) -> float:
    """RSS bound of the profile-likelihood interval with ``dof`` residual d.o.f."""
    return float(rss_min * (1.0 + f_dist.ppf(level, 1, dof) / dof))


def _geomean(v: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(v))))


def _floor_columns(xr: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(b), n, 2] columns (1, xr^−b)."""
    z = xr[None, :] ** -np.asarray(b, float)[:, None]
    return np.stack([np.ones_like(z), z], axis=-1)


def _polish_floor(xr, ly, start: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Bounded weighted least squares on (E, A', b) with the analytic Jacobian."""
    u, sw = np.log(xr), np.sqrt(w)

    def resid(p):
        return sw * (np.log(np.maximum(p[0] + p[1] * np.exp(-p[2] * u), _TINY)) - ly)

    def jac(p):
        z = np.exp(-p[2] * u)
        pred = np.maximum(p[0] + p[1] * z, _TINY)
        return sw[:, None] * np.stack([1 / pred, z / pred, -p[1] * u * z / pred], axis=1)

    res = least_squares(resid, start, jac=jac, method="trf",
                        bounds=([0, 0, B_GRID[0]], [np.inf, np.inf, B_GRID[-1]]))
    return res.x, float((res.fun ** 2).sum())


def fit_floor_vp(x: np.ndarray, y: np.ndarray, intervals: bool = True,
                 w: np.ndarray | None = None) -> dict:
    """Floor law E + A·N^−b: params, RSS and (``intervals``) profile intervals of b and E
    and band curves; ``w`` [n] weights of the squared log residuals (default 1).

    Returns {"params", "rss", "ci", "curves"}; curves are (E, A, b) with b across its
    interval and (E, A) profiled (for a plotted band)."""
    xref = _geomean(x)
    xr, ly = x / xref, np.log(y)
    w = np.ones(len(x)) if w is None else np.asarray(w, float)

    def prof_b(b):
        return profile_amplitudes(_floor_columns(xr, b), ly, w)[1]

    b0, _ = _min_1d(prof_b, B_GRID)
    coef, _ = profile_amplitudes(_floor_columns(xr, [b0]), ly, w)
    p, rss_min = _polish_floor(xr, ly, np.array([coef[0, 0], coef[0, 1], b0]), w)
    params = {"E": float(p[0]), "A": float(p[1] * xref ** p[2]), "b": float(p[2])}
    if not intervals:
        return {"params": params, "rss": rss_min, "curves": [], "ci": {}}
    thr = threshold(rss_min, len(x) - 3)
    ci_b = profile_limit(prof_b, B_GRID, float(p[2]), thr)
    y_min = float(y.min())
    e_grid = _E_FRACTIONS * y_min
    ci_e = profile_limit(lambda e: _floor_e_profile(xr, ly, e, w), e_grid, float(p[0]), thr)
    band_b = np.linspace(ci_b[0], ci_b[1], 15) if np.isfinite(ci_b[1]) else np.zeros(0)
    coef = profile_amplitudes(_floor_columns(xr, band_b), ly, w)[0] if len(band_b) else []
    curves = [(float(c[0]), float(c[1] * xref ** b), float(b)) for c, b in zip(coef, band_b)]
    return {"params": params, "rss": rss_min, "curves": curves,
            "ci": {"b": ci_b, "E": [ci_e[0], min(ci_e[1], y_min)]}}


def _floor_e_profile(xr, ly, e_values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """min over A >= 0 and b of the RSS at each fixed floor E (grid over b, then Brent)."""
    out = np.empty(len(e_values))
    for i, e in enumerate(np.asarray(e_values, float)):
        out[i] = _min_1d(lambda b, e=e: _fixed_floor_rss(xr, ly, e, b, w), B_GRID)[1]
    return out


def _fixed_floor_rss(xr, ly, e: float, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted RSS of E fixed + A·xr^−b with A >= 0 profiled (Gauss-Newton), each b."""
    z = xr[None, :] ** -np.asarray(b, float)[:, None]  # [K, n]
    y = np.exp(ly)
    r = z / y
    amp = np.maximum((w * r * np.maximum(y - e, 0.0) / y).sum(-1) / (w * r * r).sum(-1), 0.0)
    for _ in range(_GN_STEPS):
        pred = np.maximum(e + amp[:, None] * z, _TINY)
        g = z / pred
        amp = np.maximum(amp - (w * g * (np.log(pred) - ly)).sum(-1) / (w * g * g).sum(-1),
                         0.0)
    pred = np.maximum(e + amp[:, None] * z, _TINY)
    return (w * (np.log(pred) - ly) ** 2).sum(-1)


def _joint_columns(nr, dr, a, b) -> np.ndarray:
    """[len(a), len(b), n, 3] columns (1, nr^−a, dr^−b)."""
    za = nr[None, :] ** -np.asarray(a, float)[:, None]
    zb = dr[None, :] ** -np.asarray(b, float)[:, None]
    za, zb = np.broadcast_arrays(za[:, None, :], zb[None, :, :])
    return np.stack([np.ones_like(za), za, zb], axis=-1)


def _polish_joint(nr, dr, ly, w, start: np.ndarray, fixed: int | None = None
                  ) -> tuple[np.ndarray, float]:
    """Bounded weighted least squares on (E, A', B', a, b) with the analytic Jacobian;
    ``fixed``: index of an exponent (3: a, 4: b) held at its start value (a profile point)."""
    un, ud, sw = np.log(nr), np.log(dr), np.sqrt(w)
    free = [k for k in range(5) if k != fixed]

    def full(q):
        p = start.copy()
        p[free] = q
        return p

    def parts(p):
        za, zb = np.exp(-p[3] * un), np.exp(-p[4] * ud)
        return za, zb, np.maximum(p[0] + p[1] * za + p[2] * zb, _TINY)

    def resid(q):
        return sw * (np.log(parts(full(q))[2]) - ly)

    def jac(q):
        p = full(q)
        za, zb, pred = parts(p)
        cols = np.stack([1 / pred, za / pred, zb / pred, -p[1] * un * za / pred,
                         -p[2] * ud * zb / pred], axis=1)
        return sw[:, None] * cols[:, free]

    lo = np.array([0, 0, 0, JOINT_GRID[0], JOINT_GRID[0]])[free]
    hi = np.array([np.inf, np.inf, np.inf, JOINT_GRID[-1], JOINT_GRID[-1]])[free]
    res = least_squares(resid, np.clip(start[free], lo, hi), jac=jac, method="trf",
                        bounds=(lo, hi))
    return full(res.x), float((res.fun ** 2).sum())


def _joint_profile(nr, dr, ly, w, coef, rss, axis: int):
    """Vectorised profile RSS of exponent ``axis`` (0: a, 1: b): each point polished from
    the best grid point of the nearest grid column."""
    def prof(values):
        out = np.empty(len(values))
        for i, v in enumerate(np.asarray(values, float)):
            k = int(np.argmin(np.abs(JOINT_GRID - v)))
            line = rss[k] if axis == 0 else rss[:, k]
            j = int(np.argmin(line))
            amps = coef[k, j] if axis == 0 else coef[j, k]
            expo = [v, JOINT_GRID[j]] if axis == 0 else [JOINT_GRID[j], v]
            start = np.array([*amps, *expo])
            out[i] = min(_polish_joint(nr, dr, ly, w, start, fixed=3 + axis)[1], line[j]
                         if JOINT_GRID[k] == v else np.inf)
        return out

    return prof


def fit_joint_vp(n: np.ndarray, d: np.ndarray, y: np.ndarray, intervals: bool = True,
                 w: np.ndarray | None = None) -> dict:
    """Joint law E + A·N^−a + B·D^−b: params, RSS and (``intervals``) profile intervals
    of a and b; ``w`` [n] weights of the squared log residuals (default 1)."""
    nref, dref = _geomean(n), _geomean(d)
    nr, dr, ly = n / nref, d / dref, np.log(y)
    w = np.ones(len(y)) if w is None else np.asarray(w, float)
    coef, rss = profile_amplitudes(_joint_columns(nr, dr, JOINT_GRID, JOINT_GRID), ly, w)
    i, j = np.unravel_index(int(np.argmin(rss)), rss.shape)
    start = np.array([*coef[i, j], JOINT_GRID[i], JOINT_GRID[j]])
    p, rss_min = _polish_joint(nr, dr, ly, w, start)
    if rss_min > rss[i, j]:
        p, rss_min = start, float(rss[i, j])
    thr = threshold(rss_min, len(y) - 5)
    if not intervals:
        ci = {}
    else:
        ci = {k: profile_limit(_joint_profile(nr, dr, ly, w, coef, rss, axis), JOINT_GRID,
                               float(p[3 + axis]), thr, vals=rss.min(axis=1 - axis))
              for axis, k in enumerate("ab")}
    params = {"E": float(p[0]), "A": float(p[1] * nref ** p[3]),
              "B": float(p[2] * dref ** p[4]), "a": float(p[3]), "b": float(p[4])}
    return {"params": params, "rss": rss_min, "ci": ci}
