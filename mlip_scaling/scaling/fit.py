"""Scaling-law fits with intervals: L = α·N^−β, L = E + A·N^−b, joint L(N, D), frontier.

* ``power``: ordinary least squares of log L on log N (the paper's fit).
* ``floor``: minimise the SUM of Huber(δ=1e-3) losses of log residuals; variable
  projection over b (non-negative least squares for E, A at each b), then L-BFGS polish.
* ``joint``: L(N, D) = E + A/N^a + B/D^b, same loss, multistart L-BFGS.
* ``fit_frontier``: running minimum of loss over FLOPs of pooled runs, then E + A·C^−γ, or
  the pure power law when the floor is not identifiable.
* 95 % intervals: bootstrap over runs (>= 5 points; resamples with < 3 distinct sizes are
  redrawn) or, for 3-4 points, a wild (Rademacher) bootstrap of log residuals rescaled by
  1/sqrt(1 − h) (HC2 leverage of the log-log design): resampling so few sizes leaves too
  few distinct ones. Percentile intervals.
* Leave-largest-out extrapolation error: refit without the largest N (the largest N·D for
  the joint form), relative error of the prediction there.
* A floor whose 95 % interval reaches the smallest observed loss, or that is negligible
  (E < 1e-3 of it: the data show no floor), is reported as 'unidentifiable'; an exponent
  at its bound or a law explaining no variance as 'no-trend'.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import minimize, nnls

__all__ = ["FitResult", "fit_power", "fit_floor", "fit_joint", "fit_law", "frontier",
           "fit_frontier", "predict", "HUBER_DELTA"]

HUBER_DELTA = 1e-3
PAIRS_MIN_POINTS = 5  # bootstrap over runs from this many points, wild bootstrap below
_B_GRID = np.linspace(0.02, 2.0, 50)


@dataclass
class FitResult:
    """One fitted law: parameters, 95 % intervals, quality and status."""

    form: str
    status: str = "ok"  # ok | insufficient | no-trend | unidentifiable | failed
    reason: str = ""
    params: dict[str, float] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)
    n_points: int = 0
    r2: float | None = None
    extrapolation_error: float | None = None  # relative error at the largest N, left out

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def exponent(self) -> float | None:
        """β (power), b (floor) — the decay exponent; None when not fitted and for the
        joint form (two exponents: params a and b)."""
        if not self.ok or self.form == "joint":
            return None
        return self.params["beta" if self.form == "power" else "b"]

    def to_dict(self) -> dict:
        return asdict(self)


def predict(form: str, params: dict[str, float], x: np.ndarray,
            d: np.ndarray | None = None) -> np.ndarray:
    """Evaluate a fitted law at ``x`` (and data sizes ``d`` for the joint form)."""
    x = np.asarray(x, dtype=float)
    if form == "power":
        return params["alpha"] * x ** -params["beta"]
    if form == "floor":
        return params["E"] + params["A"] * x ** -params["b"]
    if form == "joint":
        return params["E"] + params["A"] * x ** -params["a"] + params["B"] * d ** -params["b"]
    raise ValueError(f"unknown law form {form!r}")


def _huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def _power_params(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return {"alpha": float(np.exp(intercept)), "beta": float(-slope)}


def _floor_objective(p: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    pred = np.exp(p[0]) + np.exp(p[1]) * x ** -p[2]
    return float(_huber(np.log(pred) - np.log(y)).sum())


def _floor_params(x: np.ndarray, y: np.ndarray, start: np.ndarray | None = None
                  ) -> dict[str, float]:
    if start is None:
        best = None
        for b in _B_GRID:  # variable projection: linear (E, A) >= 0 at each b
            coef, _ = nnls(np.stack([np.ones_like(x), x**-b], axis=1), y)
            pred = np.maximum(coef[0] + coef[1] * x**-b, 1e-300)
            loss = _huber(np.log(pred) - np.log(y)).sum()
            if best is None or loss < best[0]:
                best = (loss, coef[0], coef[1], b)
        _, e0, a0, b0 = best
        start = np.array([np.log(max(e0, 1e-6 * y.min())), np.log(max(a0, 1e-300)), b0])
    res = minimize(_floor_objective, start, args=(x, y), method="L-BFGS-B",
                   bounds=[(np.log(y.min()) - 30, np.log(y.max())), (-300, 300), (1e-3, 4.0)])
    p = res.x if res.fun <= _floor_objective(start, x, y) else start
    return {"E": float(np.exp(p[0])), "A": float(np.exp(p[1])), "b": float(p[2])}


def _joint_objective(p: np.ndarray, n: np.ndarray, d: np.ndarray, y: np.ndarray) -> float:
    pred = np.exp(p[0]) + np.exp(p[1]) * n ** -p[3] + np.exp(p[2]) * d ** -p[4]
    return float(_huber(np.log(pred) - np.log(y)).sum())


def _joint_params(n: np.ndarray, d: np.ndarray, y: np.ndarray,
                  start: np.ndarray | None = None) -> dict[str, float]:
    ly = np.log(y)
    starts = [start] if start is not None else [
        np.array([e, ly.max() + np.log(n.min()) * a, ly.max() + np.log(d.min()) * b, a, b])
        for e in (ly.min() - 3.0, ly.min() - 0.7) for a in (0.2, 0.6) for b in (0.2, 0.6)]
    bounds = [(ly.min() - 30, ly.max())] + [(-300, 300)] * 2 + [(1e-3, 4.0)] * 2
    best = min((minimize(_joint_objective, s0, args=(n, d, y), method="L-BFGS-B",
                         bounds=bounds) for s0 in starts), key=lambda r: r.fun)
    p = best.x
    return {"E": float(np.exp(p[0])), "A": float(np.exp(p[1])), "B": float(np.exp(p[2])),
            "a": float(p[3]), "b": float(p[4])}


def _start_vector(form: str, params: dict[str, float]) -> np.ndarray | None:
    if form == "floor":
        return np.array([np.log(params["E"]), np.log(params["A"]), params["b"]])
    if form == "joint":
        return np.array([np.log(params[k]) for k in "EAB"] + [params["a"], params["b"]])
    return None


def _params(form: str, x: np.ndarray, y: np.ndarray, d: np.ndarray | None,
            warm: dict[str, float] | None = None) -> dict[str, float]:
    start = None if warm is None else _start_vector(form, warm)
    if form == "power":
        return _power_params(x, y)
    if form == "floor":
        return _floor_params(x, y, start)
    return _joint_params(x, d, y, start)


def _leverage(x: np.ndarray, d: np.ndarray | None) -> np.ndarray:
    """Hat-matrix diagonal of the log-log linear design (capped at 0.9)."""
    cols = [np.ones_like(x), np.log(x)] + ([] if d is None else [np.log(d)])
    design = np.stack(cols, axis=1)
    hat = design @ np.linalg.pinv(design)
    return np.minimum(np.diag(hat), 0.9)


def _bootstrap(form: str, x, y, d, params, n_boot: int, seed: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    fitted = np.log(predict(form, params, x, d))
    resid = (np.log(y) - fitted) / np.sqrt(1.0 - _leverage(x, d))  # HC2 rescaling
    draws: list[dict[str, float]] = []
    for _ in range(10 * n_boot):
        if len(draws) == n_boot:
            break
        if len(x) >= PAIRS_MIN_POINTS:  # resample runs
            idx = rng.integers(len(x), size=len(x))
            if len(np.unique(x[idx])) < 3:
                continue
            xb, yb, db = x[idx], y[idx], None if d is None else d[idx]
        else:  # wild bootstrap of log residuals (keeps the design fixed)
            xb, db = x, d
            yb = np.exp(fitted + resid * rng.choice([-1.0, 1.0], size=len(x)))
        draws.append(_params(form, xb, yb, db, warm=params))
    if not draws:
        raise ValueError("no bootstrap resample had 3 distinct sizes")
    return {k: [float(np.percentile([p[k] for p in draws], 2.5)),
                float(np.percentile([p[k] for p in draws], 97.5))] for k in params}


def _r2(form: str, params, x, y, d) -> float:
    ly = np.log(y)
    ss = float(((ly - np.log(predict(form, params, x, d))) ** 2).sum())
    tot = float(((ly - ly.mean()) ** 2).sum())
    return 1.0 - ss / tot if tot > 0 else float("nan")


def _extrapolation(form: str, x, y, d, warm: dict[str, float]) -> float | None:
    keep = x < x.max() if form != "joint" else (x * d) < (x * d).max()
    if len(np.unique(x[keep])) < 3:
        return None
    held = ~keep
    p = _params(form, x[keep], y[keep], None if d is None else d[keep], warm=warm)
    pred = predict(form, p, x[held], None if d is None else d[held])
    return float(np.mean(np.abs(pred - y[held]) / y[held]))


def fit_law(form: str, x, y, d=None, n_boot: int = 100, seed: int = 0) -> FitResult:
    """Fit ``form`` ('power', 'floor', 'joint') to losses ``y`` at sizes ``x`` (and ``d``).

    Returns a FitResult whose status is not 'ok' (and params empty) when there are
    fewer than 3 distinct sizes, non-positive/non-finite values, or no decreasing trend.
    """
    if form not in ("power", "floor", "joint"):
        raise ValueError(f"unknown law form {form!r} (power, floor, joint)")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    d = None if d is None else np.asarray(d, dtype=float)
    result = FitResult(form=form, n_points=int(len(x)))
    good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if d is not None:
        good &= np.isfinite(d) & (d > 0)
    x, y, d = x[good], y[good], None if d is None else d[good]
    result.n_points = int(len(x))
    distinct = len(np.unique(x)) if d is None else min(len(np.unique(x)), len(np.unique(d)))
    needed = {"power": 3, "floor": 5, "joint": 3}[form]  # floor: 3 parameters + 2 dof
    if distinct < needed or (form == "joint" and len(x) < 7):
        result.status, result.reason = "insufficient", (
            f"{distinct} distinct sizes ({len(x)} valid points); the {form} form needs >= "
            f"{needed}" + (" and >= 7 points" if form == "joint" else ""))
        return result
    trend = _power_params(x, y)["beta"] if d is None else None
    if trend is not None and trend <= 0:
        result.status, result.reason = "no-trend", f"loss does not decrease (slope {-trend:.3g})"
        return result
    try:
        params = _params(form, x, y, d)
        ci = _bootstrap(form, x, y, d, params, n_boot, seed)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        result.status, result.reason = "failed", str(exc)
        return result
    key = {"power": "beta", "floor": "b"}.get(form)
    if key and ci[key][0] <= 0 < params[key] and form == "power":
        result.status, result.reason = "no-trend", (
            f"95 % interval of {key} includes 0 ({ci[key][0]:.3g}, {ci[key][1]:.3g})")
        return result
    r2 = _r2(form, params, x, y, d)
    at_bound = [k for k in ("a", "b") if k in params and not 2e-3 < params[k] < 3.99]
    if form != "power" and (at_bound or not r2 > 0):
        result.status, result.reason = "no-trend", (
            f"exponent {at_bound[0]} at its bound ({params[at_bound[0]]:.3g})" if at_bound
            else f"the law explains no variance (R² {r2:.3g})")
        return result
    if form == "floor" and params["E"] < 1e-3 * y.min():
        result.status, result.reason = "unidentifiable", (
            f"floor E ≈ 0 ({params['E']:.3g}): the data show no floor; use the pure power law")
        return result
    if form == "floor" and ci["E"][1] >= y.min():
        result.status, result.reason = "unidentifiable", (
            f"floor E not identifiable: its 95 % interval ({ci['E'][0]:.3g}, {ci['E'][1]:.3g})"
            f" reaches the smallest loss {y.min():.3g}; use the pure power law")
        return result
    result.params, result.ci = params, ci
    result.r2 = r2
    result.extrapolation_error = _extrapolation(form, x, y, d, params)
    return result


def fit_power(x, y, **kw) -> FitResult:
    """The paper's pure power law L = α·N^−β."""
    return fit_law("power", x, y, **kw)


def fit_floor(x, y, **kw) -> FitResult:
    """L = E + A·N^−b with an irreducible floor E."""
    return fit_law("floor", x, y, **kw)


def fit_joint(n, d, y, **kw) -> FitResult:
    """L(N_params, N_data) = E + A/N^a + B/D^b."""
    return fit_law("joint", n, y, d=d, **kw)


def frontier(compute, loss) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal frontier: at each distinct compute the best loss, kept when it is
    below every cheaper run's (running minimum). Returns sorted (compute [M], loss [M])."""
    c, l = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    good = np.isfinite(c) & np.isfinite(l) & (c > 0) & (l > 0)
    levels, inverse = np.unique(c[good], return_inverse=True)
    best_at = np.full(len(levels), np.inf)
    np.minimum.at(best_at, inverse, l[good])
    keep = best_at < np.minimum.accumulate(np.concatenate([[np.inf], best_at[:-1]]))
    return levels[keep], best_at[keep]


def fit_frontier(compute, loss, **kw) -> tuple[np.ndarray, np.ndarray, FitResult]:
    """Compute frontier of pooled runs and its law: L = E + A·C^−γ (form 'floor') when the
    floor is identifiable, else the pure power law (its reason says why).

    Returns (frontier FLOPs [M], frontier losses [M], FitResult).
    """
    c, l = frontier(compute, loss)
    floor = fit_law("floor", c, l, **kw)
    if floor.ok:
        return c, l, floor
    power = fit_law("power", c, l, **kw)
    if power.ok:
        power.reason = f"floor form: {floor.reason}"
    return c, l, power
