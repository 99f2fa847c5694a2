"""Scaling-law fits with calibrated 95 % intervals and trend tests.

The compute frontier's selection and null are in ``frontier``; cells and weights in
``fit_cells``; the broken form in ``fit_broken``; the leave-largest-out test and collinear
axes in ``fit_checks``.

Noise model: Gaussian on log L. Every fit is made on cells (the runs at one size, or one
(N, D) pair): their mean log L, weighted by inverse variance (recorded standard errors,
replicate counts; ``fit_cells``). Replicate seeds thus never count as independent
points: the residual variance comes from the cell means and every interval and test has
(cells − parameters) degrees of freedom.

Forms:

* ``power`` L = α·N^−β: weighted least squares of log L on log N (the paper's fit,
  unweighted with one run per size). The interval of β is the t-interval with K − 2 d.o.f.
* ``floor`` L = E + A·N^−b and ``joint`` L(N, D) = E + A/N^a + B/D^b: variable projection
  over a grid of exponents, polished with the analytic Jacobian; profile-likelihood
  intervals (F-calibrated; see ``fit_nonlinear``). Every fit starts from scratch.
* ``broken`` L = a·N^−b1·(1 + (N/N_b)^(1/s))^(−(b2−b1)·s), s fixed: reported only when it
  beats the pure power law by its nested test (``p_break``, exact Monte-Carlo null).
* Trend test: an exponent is reported only when the log-log slope differs from 0 (F-test
  against a constant, p < 0.05) and the loss decreases; the joint form needs both partial
  slopes of log L on (log N, log D) to pass. ``p_trend`` is in every row. When log N and
  log D are collinear the joint form says so (status ``collinear``) and gives the power
  law along the runs (the combined axis) instead.
* Floor test: the floor form is reported only when it beats the pure power law it nests
  (F-test on the residual sums of squares, 1 and K − 3 d.o.f., p < 0.05: ``p_floor``).
* Curvature test (power form): t-test of a quadratic term in log-log (``p_curv``); flag
  ``curvature`` when p < 0.05 (a bend: a floor, a broken law). With SEs declared complete
  (``se_complete``) the known-variance z-test instead (more power at 5 sizes).
* Leave-largest-out check: refit from scratch without the largest cell; the relative
  error there (``extrapolation_error``) and a t-test of it against the noise
  (``p_extrap``; flag ``extrapolation`` when p < 0.05).
* With <= 4 distinct sizes a fit is flagged ``indicative``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from mlip_scaling.scaling.fit_broken import broken_predict, fit_broken
from mlip_scaling.scaling.fit_cells import Cells, curvature_p, loglog_ols, make_cells, reweight
from mlip_scaling.scaling.fit_checks import (
    COLLINEAR_R,
    NEAR_COLLINEAR_R,
    extrapolation_p,
    jacobian,
    linear_se,
    log_correlation,
    trend_p,
)
from mlip_scaling.scaling.fit_nonlinear import fit_floor_vp, fit_joint_vp

__all__ = ["FitResult", "fit_power", "fit_floor", "fit_joint", "fit_law", "predict", "ALPHA",
           "NEEDED"]

ALPHA = 0.05  # level of the trend, floor, break, curvature and extrapolation tests
INDICATIVE_SIZES = 4
#: minimum (distinct sizes, cells) of each law form; a cell is one size (one (N, D) pair)
NEEDED = {"power": (3, 3), "floor": (4, 5), "joint": (3, 8), "broken": (6, 6)}
_INTERVAL = {"power": "t (cells-2 dof)", "floor": "profile likelihood, F(1, cells-3)",
             "joint": "profile likelihood, F(1, cells-5)",
             "broken": "profile likelihood, F(1, cells-4), s fixed"}
#: parameters varied in the linearised standard errors (s of the broken form is fixed)
_FREE = {"power": ["alpha", "beta"], "floor": ["E", "A", "b"],
         "joint": ["E", "A", "B", "a", "b"], "broken": ["a", "b1", "b2", "Nb"]}


@dataclass
class FitResult:
    """One fitted law: parameters, 95 % intervals, tests, flags and status."""

    form: str
    #: ok | insufficient | no-trend | unidentifiable | collinear | failed
    status: str = "ok"
    reason: str = ""
    params: dict[str, float] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)
    n_points: int = 0  # runs
    n_sizes: int = 0
    indicative: bool = False  # <= 4 distinct sizes
    interval: str = ""  # how the 95 % intervals were made
    p_trend: float | None = None  # test against no dependence (F-test or permutation)
    p_floor: float | None = None  # floor form against the pure power law
    p_perm: float | None = None  # permutation null of a frontier exponent
    r2: float | None = None
    extrapolation_error: float | None = None  # relative error at the largest N, left out
    band: dict[str, list[float]] = field(default_factory=dict)  # x, lo, hi (95 %)
    n_cells: int = 0  # distinct sizes (or (N, D) pairs): the points fitted
    weighting: str = ""  # how runs became weighted cells
    dof: int | None = None  # residual degrees of freedom (cells − parameters)
    resid_sd: float | None = None  # residual sd of log L at weight 1 (weights mean 1)
    se: dict[str, float] = field(default_factory=dict)  # standard errors (linearised)
    p_curv: float | None = None  # quadratic term in log-log (power form)
    p_extrap: float | None = None  # leave-largest-out error against the noise
    p_break: float | None = None  # broken form against the pure power law
    flags: list[str] = field(default_factory=list)  # curvature | extrapolation

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def exponent(self) -> float | None:
        """β (power), b (floor) — the decay exponent; None when not fitted and for the
        joint and broken forms (two exponents each)."""
        if not self.ok or self.form in ("joint", "broken"):
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
    if form == "broken":
        return broken_predict(params, x)
    raise ValueError(f"unknown law form {form!r}")


def _power(x, y, w) -> tuple[dict, dict, dict]:
    """(params, ci, band) of the power law with t-intervals and t-band."""
    o = loglog_ols(x, y, w)
    t = float(stats.t.ppf(1 - ALPHA / 2, o["n"] - 2))
    beta = -o["slope"]
    params = {"alpha": float(np.exp(o["icept"])), "beta": beta}
    ci = {"beta": [beta - t * o["se_slope"], beta + t * o["se_slope"]],
          "alpha": [float(np.exp(o["icept"] - t * o["se_icept"])),
                    float(np.exp(o["icept"] + t * o["se_icept"]))]}
    xs = np.logspace(np.log10(x.min()), np.log10(x.max()), 40)
    g = np.stack([np.ones(40), np.log(xs)], axis=1)
    mid = o["icept"] + o["slope"] * np.log(xs)
    half = t * np.sqrt(o["s2"] * np.einsum("ij,jk,ik->i", g, o["cov"], g))
    band = {"x": xs.tolist(), "lo": np.exp(mid - half).tolist(),
            "hi": np.exp(mid + half).tolist()}
    return params, ci, band


def _floor_band(x: np.ndarray, curves: list) -> dict:
    if not curves:
        return {}
    xs = np.logspace(np.log10(x.min()), np.log10(x.max()), 40)
    ys = np.array([e + a * xs**-b for e, a, b in curves])
    return {"x": xs.tolist(), "lo": ys.min(0).tolist(), "hi": ys.max(0).tolist()}


def _r2(form: str, params, c: Cells) -> float:
    ly = np.log(c.y)
    ss = float((c.w * (ly - np.log(predict(form, params, c.x, c.d))) ** 2).sum())
    tot = float((c.w * (ly - np.average(ly, weights=c.w)) ** 2).sum())
    return 1.0 - ss / tot if tot > 0 else float("nan")


def _core(form: str, x, y, d, w, intervals: bool = True) -> tuple[dict, dict, dict, float,
                                                                  dict]:
    """(params, ci, band, weighted RSS, extra) of ``form`` fitted from scratch on cells."""
    if form == "power":
        params, ci, band = _power(x, y, w)
        return params, ci, band, loglog_ols(x, y, w)["rss"], {}
    if form == "floor":
        out = fit_floor_vp(x, y, intervals, w)
        return out["params"], out["ci"], _floor_band(x, out["curves"]), out["rss"], {}
    if form == "broken":
        out = fit_broken(x, y, w, intervals=intervals)
        return out["params"], out["ci"], {}, out["rss"], {"p_break": out["p_break"]}
    out = fit_joint_vp(x, d, y, intervals, w)
    return out["params"], out["ci"], {}, out["rss"], {}


def _logpred(form: str, x, d):
    return lambda p: np.log(np.maximum(predict(form, p, x, d), 1e-300))


def _extrapolation(form: str, c: Cells) -> tuple[float | None, float | None]:
    """Leave-largest-out (relative error, t-test p), refitted from scratch."""
    key = c.x if form != "joint" else c.x * c.d
    keep = key < key.max()
    sizes, points = NEEDED[form]
    dk = None if c.d is None else c.d[keep]
    if len(np.unique(c.x[keep])) < sizes or keep.sum() < points or (
            form == "joint" and len(np.unique(dk)) < sizes):
        return None, None
    params, _, _, rss, _ = _core(form, c.x[keep], c.y[keep], dk, c.w[keep], intervals=False)
    dh = None if c.d is None else c.d[~keep]
    pred = predict(form, params, c.x[~keep], dh)
    rel = float(np.mean(np.abs(pred - c.y[~keep]) / c.y[~keep]))
    if (~keep).sum() != 1:
        return rel, None
    free = _FREE[form]
    jac = jacobian(_logpred(form, c.x[keep], dk), params, free)
    grad = jacobian(_logpred(form, c.x[~keep], dh), params, free)[0]
    resid = float(np.log(c.y[~keep][0]) - np.log(pred[0]))
    return rel, extrapolation_p(resid, float(c.w[~keep][0]), grad, jac, c.w[keep], rss)


def _clean(x, y, d, se=None):
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    d = None if d is None else np.asarray(d, dtype=float)
    good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if d is not None:
        good &= np.isfinite(d) & (d > 0)
    if se is not None:
        se = np.asarray(se, dtype=float)[good]
        se = se if np.all(np.isfinite(se) & (se > 0)) else None  # all or none
    return x[good], y[good], None if d is None else d[good], se


def _collinear(res: FitResult, c: Cells, r: float, partial: str) -> FitResult:
    """Joint form on collinear (log N, log D): the power law along the runs instead."""
    k = float(np.polyfit(np.log(c.x), np.log(c.d), 1)[0])
    words = (f"N and D are collinear in log space (r = {r:.3f}, D ∝ N^{k:.2f} over the runs): "
             f"their exponents cannot be separated" + (f" ({partial})" if partial else ""))
    o = loglog_ols(c.x, c.y, c.w)
    res.p_trend = o["p"] if o["slope"] < 0 else 1.0
    if o["slope"] >= 0 or o["p"] >= ALPHA:
        res.status, res.reason = "no-trend", (
            f"{words}; no significant decrease along the runs either (p={res.p_trend:.3g})")
        return res
    params, ci, band = _power(c.x, c.y, c.w)
    res.status, res.interval = "collinear", _INTERVAL["power"] + ", combined axis"
    res.params, res.ci, res.band = {**params, "k": k}, ci, band
    res.dof, res.resid_sd = len(c.x) - 2, float(np.sqrt(o["s2"]))
    res.se = {"beta": o["se_slope"]}
    res.reason = (f"{words}; along the runs L ∝ N^-{params['beta']:.3f} "
                  f"[{ci['beta'][0]:.3f}, {ci['beta'][1]:.3f}] (power law on the combined "
                  f"axis N, with D ∝ N^{k:.2f})")
    return res


def _checks(res: FitResult, form: str, c: Cells, params: dict, rss: float) -> None:
    """Degrees of freedom, residual sd, standard errors, curvature and extrapolation."""
    free = _FREE[form]
    res.dof = len(c.x) - len(free)
    s2 = rss / res.dof if res.dof > 0 else float("nan")
    res.resid_sd = float(np.sqrt(s2))
    jac = jacobian(_logpred(form, c.x, c.d), params, free)
    ses = linear_se(jac, c.w, s2)
    res.se = {k: float(v) for k, v in zip(free, ses) if k in ("beta", "a", "b", "b1", "b2")}
    if form == "power":
        res.p_curv = curvature_p(c.x, c.y, c.w, c.var_known)
        if res.p_curv is not None and res.p_curv < ALPHA:
            res.flags.append("curvature")
    res.extrapolation_error, res.p_extrap = _extrapolation(form, c)
    if res.p_extrap is not None and res.p_extrap < ALPHA:
        res.flags.append("extrapolation")


def _nested(res: FitResult, form: str, c: Cells, rss: float, extra: dict) -> bool:
    """Floor and break tests against the pure power law; False (status set) on failure."""
    if form == "floor":
        res.p_floor = _floor_test(c, rss)
        if res.p_floor >= ALPHA:
            res.status, res.reason = "unidentifiable", (
                f"no floor: E + A·N^-b does not beat the pure power law (F-test "
                f"p={res.p_floor:.3g}); use the pure power law")
            return False
    if form == "broken":
        res.p_break = extra["p_break"]
        if res.p_break is None or res.p_break >= ALPHA:
            res.status, res.reason = "unidentifiable", (
                "no break: the broken power law does not beat the pure power law (sup-F "
                f"test p={res.p_break if res.p_break is not None else float('nan'):.3g}); "
                "use the pure power law")
            return False
    return True


def fit_law(form: str, x, y, d=None, se=None, se_complete: bool = False) -> FitResult:
    """Fit ``form`` ('power', 'floor', 'joint', 'broken') to losses ``y`` [n] at sizes
    ``x`` [n] (and data sizes ``d`` [n] for the joint form); ``se`` [n]: standard errors
    of ``y`` (same units), used as weights when every point has one. ``se_complete``: the
    SEs describe all the noise of a run, training included (e.g. from replicate trainings),
    so the curvature test takes them as known variances (``fit_cells.curvature_p``;
    ignored when a cell's seeds scatter more than their SEs explain). Evaluation SEs alone
    do not: they leave out the seed-to-seed and per-size noise of training.

    Runs at one size (one (N, D) pair) are averaged into a cell (see ``fit_cells``).
    The status is not 'ok' (params empty) with too few distinct sizes or cells, no
    significant decreasing trend, a floor or break that does not beat the pure power law,
    an exponent whose interval is unbounded, or collinear N and D ('collinear': the power
    law along the runs is in params); ``reason`` says which, with the p-value.
    """
    if form not in NEEDED:
        raise ValueError(f"unknown law form {form!r} ({', '.join(NEEDED)})")
    if (form == "joint") != (d is not None):
        raise ValueError("the joint form needs data sizes d; the other forms take none")
    x, y, d, se = _clean(x, y, d, se)
    sizes = len(np.unique(x)) if d is None else min(len(np.unique(x)), len(np.unique(d)))
    res = FitResult(form=form, n_points=int(len(x)), n_sizes=sizes, interval=_INTERVAL[form],
                    indicative=sizes <= INDICATIVE_SIZES)
    c = make_cells(x, y, d, se) if len(x) else None
    if c is not None and c.var_known is not None:
        if se_complete:
            c.weighting += "; curvature test with the SEs as known variances"
        else:
            c.var_known = None
    res.n_cells = 0 if c is None else len(c.x)
    need_sizes, need_cells = NEEDED[form]
    r = log_correlation(c.x, c.d) if form == "joint" and c is not None else 0.0
    if abs(r) >= COLLINEAR_R and res.n_cells >= NEEDED["power"][1]:
        res.weighting = c.weighting
        return _collinear(res, c, r, "")
    if sizes < need_sizes or res.n_cells < need_cells:
        res.status, res.reason = "insufficient", (
            f"{sizes} distinct sizes ({res.n_cells} cells of {len(x)} valid runs); the {form} "
            f"form needs >= {need_sizes} sizes and >= {need_cells} cells")
        return res
    res.weighting = c.weighting
    res.p_trend, why = trend_p(form, c, ALPHA)
    if why:
        if abs(r) >= NEAR_COLLINEAR_R:
            alt = _collinear(FitResult(**res.to_dict()), c, r, f"partial tests: {why}")
            if alt.status == "collinear":
                return alt
        res.status, res.reason = "no-trend", why
        return res
    try:
        if form in ("floor", "joint"):  # τ² about the law itself, not a quadratic
            c = reweight(c, lambda w: _core(form, c.x, c.y, c.d, w, False)[3], len(_FREE[form]))
        params, ci, band, rss, extra = _core(form, c.x, c.y, c.d, c.w)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        res.status, res.reason = "failed", str(exc)
        return res
    if not _nested(res, form, c, rss, extra):
        return res
    unbounded = [k for k in ("a", "b", "beta", "b1", "b2") if k in ci
                 and not np.isfinite(ci[k][1])]
    if unbounded:
        res.status, res.reason = "unidentifiable", (
            f"the 95 % interval of {unbounded[0]} is unbounded above (estimate "
            f"{params[unbounded[0]]:.3g})")
        return res
    res.params, res.ci, res.band = params, ci, band
    res.r2 = _r2(form, params, c)
    _checks(res, form, c, params, rss)
    return res


def _floor_test(c: Cells, rss_floor: float) -> float:
    """F-test of the floor form against the pure power law it nests (E = 0)."""
    dof = len(c.x) - 3
    rss_power = loglog_ols(c.x, c.y, c.w)["rss"]
    if rss_floor <= 0:
        return 0.0 if rss_power > 0 else 1.0
    fstat = max(rss_power - rss_floor, 0.0) / (rss_floor / dof)
    return float(stats.f.sf(fstat, 1, dof))


def fit_power(x, y, se=None, se_complete: bool = False) -> FitResult:
    """The paper's pure power law L = α·N^−β."""
    return fit_law("power", x, y, se=se, se_complete=se_complete)


def fit_floor(x, y, se=None) -> FitResult:
    """L = E + A·N^−b with an irreducible floor E."""
    return fit_law("floor", x, y, se=se)


def fit_joint(n, d, y, se=None) -> FitResult:
    """L(N_params, N_data) = E + A/N^a + B/D^b."""
    return fit_law("joint", n, y, d=d, se=se)
