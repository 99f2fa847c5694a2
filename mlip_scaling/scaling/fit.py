"""Scaling-law fits with calibrated 95 % intervals and trend tests.

The compute frontier's selection and null are in ``frontier``.

Forms (noise model: Gaussian on log L, so every loss is a sum of squared log residuals):

* ``power`` L = α·N^−β: ordinary least squares of log L on log N (the paper's fit). The
  interval of β is the t-interval with n − 2 degrees of freedom.
* ``floor`` L = E + A·N^−b and ``joint`` L(N, D) = E + A/N^a + B/D^b: variable projection
  over a grid of exponents, polished with the analytic Jacobian; profile-likelihood
  intervals (F-calibrated; see ``fit_nonlinear``). Every fit starts from scratch.
* Trend test: an exponent is reported only when the log-log slope differs from 0 (F-test
  against a constant, p < 0.05) and the loss decreases; the joint form needs both partial
  slopes of log L on (log N, log D) to pass. ``p_trend`` is in every row.
* Floor test: the floor form is reported only when it beats the pure power law it nests
  (F-test on the residual sums of squares, 1 and n − 3 d.o.f., p < 0.05: ``p_floor``).
* Replicates (several runs at one size) enter as separate points: the residual variance
  then includes the seed-to-seed scatter and the d.o.f. count every run.
* With <= 4 distinct sizes a fit is flagged ``indicative``.
* Leave-largest-out check: refit from scratch without the largest N (N·D for the joint
  form), relative error of the prediction there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from mlip_scaling.scaling.fit_nonlinear import fit_floor_vp, fit_joint_vp

__all__ = ["FitResult", "fit_power", "fit_floor", "fit_joint", "fit_law", "predict", "ALPHA",
           "NEEDED"]

ALPHA = 0.05  # level of the trend and floor tests (95 % intervals)
INDICATIVE_SIZES = 4
#: minimum (distinct sizes, points) of each law form
NEEDED = {"power": (3, 3), "floor": (4, 5), "joint": (3, 8)}
_INTERVAL = {"power": "t (n-2 dof)", "floor": "profile likelihood, F(1, n-3)",
             "joint": "profile likelihood, F(1, n-5)"}


@dataclass
class FitResult:
    """One fitted law: parameters, 95 % intervals, tests and status."""

    form: str
    status: str = "ok"  # ok | insufficient | no-trend | unidentifiable | failed
    reason: str = ""
    params: dict[str, float] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)
    n_points: int = 0
    n_sizes: int = 0
    indicative: bool = False  # <= 4 distinct sizes
    interval: str = ""  # how the 95 % intervals were made
    p_trend: float | None = None  # test against no dependence (F-test or permutation)
    p_floor: float | None = None  # floor form against the pure power law
    p_perm: float | None = None  # permutation null of a frontier exponent
    r2: float | None = None
    extrapolation_error: float | None = None  # relative error at the largest N, left out
    band: dict[str, list[float]] = field(default_factory=dict)  # x, lo, hi (95 %)

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


def _ols(x: np.ndarray, y: np.ndarray) -> dict:
    """Log-log least squares: slope, intercept, RSS, their standard errors, F-test p."""
    u, v = np.log(x), np.log(y)
    n, ubar = len(u), u.mean()
    sxx = float(((u - ubar) ** 2).sum())
    slope = float(((u - ubar) * (v - v.mean())).sum() / sxx)
    icept = float(v.mean() - slope * ubar)
    rss = float(((v - icept - slope * u) ** 2).sum())
    tss = float(((v - v.mean()) ** 2).sum())
    s2 = rss / (n - 2)
    fstat = (tss - rss) / s2 if s2 > 0 else np.inf
    return {"slope": slope, "icept": icept, "rss": rss, "tss": tss, "s2": s2, "n": n,
            "ubar": float(ubar), "sxx": sxx, "se_slope": float(np.sqrt(s2 / sxx)),
            "se_icept": float(np.sqrt(s2 * (1 / n + ubar**2 / sxx))),
            "p": float(stats.f.sf(fstat, 1, n - 2)) if np.isfinite(fstat) else 0.0}


def _power(x, y) -> tuple[dict, dict, dict]:
    """(params, ci, band) of the power law with t-intervals and t-band."""
    o = _ols(x, y)
    t = float(stats.t.ppf(1 - ALPHA / 2, o["n"] - 2))
    beta = -o["slope"]
    params = {"alpha": float(np.exp(o["icept"])), "beta": beta}
    ci = {"beta": [beta - t * o["se_slope"], beta + t * o["se_slope"]],
          "alpha": [float(np.exp(o["icept"] - t * o["se_icept"])),
                    float(np.exp(o["icept"] + t * o["se_icept"]))]}
    xs = np.logspace(np.log10(x.min()), np.log10(x.max()), 40)
    mid = o["icept"] + o["slope"] * np.log(xs)
    half = t * np.sqrt(o["s2"] * (1 / o["n"] + (np.log(xs) - o["ubar"]) ** 2 / o["sxx"]))
    band = {"x": xs.tolist(), "lo": np.exp(mid - half).tolist(),
            "hi": np.exp(mid + half).tolist()}
    return params, ci, band


def _floor_band(x: np.ndarray, curves: list) -> dict:
    if not curves:
        return {}
    xs = np.logspace(np.log10(x.min()), np.log10(x.max()), 40)
    ys = np.array([e + a * xs**-b for e, a, b in curves])
    return {"x": xs.tolist(), "lo": ys.min(0).tolist(), "hi": ys.max(0).tolist()}


def _joint_trend(n, d, y) -> tuple[float, str]:
    """Partial F-tests of log L on (1, log N, log D): (larger p, reason when failing)."""
    design = np.stack([np.ones_like(n), np.log(n), np.log(d)], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.log(y), rcond=None)
    rss = float(((np.log(y) - design @ coef) ** 2).sum())
    dof = len(y) - 3
    pvals = []
    for k in (1, 2):
        keep = [0, 3 - k]
        c0, *_ = np.linalg.lstsq(design[:, keep], np.log(y), rcond=None)
        rss0 = float(((np.log(y) - design[:, keep] @ c0) ** 2).sum())
        fstat = (rss0 - rss) / (rss / dof) if rss > 0 else np.inf
        p = float(stats.f.sf(fstat, 1, dof)) if np.isfinite(fstat) else 0.0
        pvals.append(p if coef[k] < 0 else 1.0)
    why = "" if max(pvals) < ALPHA else (
        f"no significant decrease with N (p={pvals[0]:.3g}) or with D (p={pvals[1]:.3g})")
    return max(pvals), why


def _r2(form: str, params, x, y, d) -> float:
    ly = np.log(y)
    ss = float(((ly - np.log(predict(form, params, x, d))) ** 2).sum())
    tot = float(((ly - ly.mean()) ** 2).sum())
    return 1.0 - ss / tot if tot > 0 else float("nan")


def _core(form: str, x, y, d, intervals: bool = True) -> tuple[dict, dict, dict, float]:
    """(params, ci, band, RSS) of ``form`` fitted from scratch."""
    if form == "power":
        params, ci, band = _power(x, y)
        return params, ci, band, _ols(x, y)["rss"]
    if form == "floor":
        out = fit_floor_vp(x, y, intervals)
        return out["params"], out["ci"], _floor_band(x, out["curves"]), out["rss"]
    out = fit_joint_vp(x, d, y, intervals)
    return out["params"], out["ci"], {}, out["rss"]


def _extrapolation(form: str, x, y, d) -> float | None:
    """Leave-largest-out relative error, refitted from scratch (no warm start)."""
    keep = x < x.max() if form != "joint" else (x * d) < (x * d).max()
    sizes, points = NEEDED[form]
    if len(np.unique(x[keep])) < sizes or keep.sum() < points:
        return None
    dk = None if d is None else d[keep]
    if form == "joint" and len(np.unique(dk)) < sizes:
        return None
    params = _core(form, x[keep], y[keep], dk, intervals=False)[0]
    pred = predict(form, params, x[~keep], None if d is None else d[~keep])
    return float(np.mean(np.abs(pred - y[~keep]) / y[~keep]))


def _clean(x, y, d):
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    d = None if d is None else np.asarray(d, dtype=float)
    good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if d is not None:
        good &= np.isfinite(d) & (d > 0)
    return x[good], y[good], None if d is None else d[good]


def _trend(form: str, x, y, d) -> tuple[float, str]:
    if form == "joint":
        return _joint_trend(x, d, y)
    o = _ols(x, y)
    if o["slope"] >= 0:
        verb = "increases" if o["p"] < ALPHA else "does not decrease"
        return o["p"], f"loss {verb} (log-log slope {o['slope']:.3g}, p={o['p']:.3g})"
    if o["p"] >= ALPHA:
        return o["p"], f"no significant trend (F-test against a constant: p={o['p']:.3g})"
    return o["p"], ""


def fit_law(form: str, x, y, d=None) -> FitResult:
    """Fit ``form`` ('power', 'floor', 'joint') to losses ``y`` at sizes ``x`` (and ``d``).

    The status is not 'ok' (params empty) with too few distinct sizes or points, no
    significant decreasing trend, a floor that does not beat the pure power law, or an
    exponent whose interval is unbounded; ``reason`` says which, with the p-value.
    """
    if form not in NEEDED:
        raise ValueError(f"unknown law form {form!r} (power, floor, joint)")
    x, y, d = _clean(x, y, d)
    sizes = len(np.unique(x)) if d is None else min(len(np.unique(x)), len(np.unique(d)))
    res = FitResult(form=form, n_points=int(len(x)), n_sizes=sizes, interval=_INTERVAL[form],
                    indicative=sizes <= INDICATIVE_SIZES)
    need_sizes, need_points = NEEDED[form]
    if sizes < need_sizes or len(x) < need_points:
        res.status, res.reason = "insufficient", (
            f"{sizes} distinct sizes ({len(x)} valid points); the {form} form needs >= "
            f"{need_sizes} sizes and >= {need_points} points")
        return res
    res.p_trend, why = _trend(form, x, y, d)
    if why:
        res.status, res.reason = "no-trend", why
        return res
    try:
        params, ci, band, rss = _core(form, x, y, d)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        res.status, res.reason = "failed", str(exc)
        return res
    if form == "floor":
        res.p_floor = _floor_test(x, y, rss)
        if res.p_floor >= ALPHA:
            res.status, res.reason = "unidentifiable", (
                f"no floor: E + A·N^-b does not beat the pure power law (F-test "
                f"p={res.p_floor:.3g}); use the pure power law")
            return res
    unbounded = [k for k in ("a", "b", "beta") if k in ci and not np.isfinite(ci[k][1])]
    if unbounded:
        res.status, res.reason = "unidentifiable", (
            f"the 95 % interval of {unbounded[0]} is unbounded above (estimate "
            f"{params[unbounded[0]]:.3g})")
        return res
    res.params, res.ci, res.band = params, ci, band
    res.r2 = _r2(form, params, x, y, d)
    res.extrapolation_error = _extrapolation(form, x, y, d)
    return res


def _floor_test(x, y, rss_floor: float) -> float:
    """F-test of the floor form against the pure power law it nests (E = 0)."""
    dof = len(x) - 3
    rss_power = _ols(x, y)["rss"]
    if rss_floor <= 0:
        return 0.0 if rss_power > 0 else 1.0
    fstat = max(rss_power - rss_floor, 0.0) / (rss_floor / dof)
    return float(stats.f.sf(fstat, 1, dof))


def fit_power(x, y) -> FitResult:
    """The paper's pure power law L = α·N^−β."""
    return fit_law("power", x, y)


def fit_floor(x, y) -> FitResult:
    """L = E + A·N^−b with an irreducible floor E."""
    return fit_law("floor", x, y)


def fit_joint(n, d, y) -> FitResult:
    """L(N_params, N_data) = E + A/N^a + B/D^b."""
    return fit_law("joint", n, y, d=d)
