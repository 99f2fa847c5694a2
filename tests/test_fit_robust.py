"""Fits on real-learning-curve data: replicate seeds, recorded standard errors, bends,
broken laws, collinear axes and the frontier of the selection metric itself."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlip_scaling.scaling.fit import fit_law, fit_power, predict
from mlip_scaling.scaling.fit_cells import make_cells
from mlip_scaling.scaling.fit_planted import broken_law, frontier_runs, frontier_truth
from mlip_scaling.scaling.frontier import frontier_fits


def test_recorded_standard_errors_give_the_weighted_least_squares_t_interval():
    rng = np.random.default_rng(0)
    x = np.logspace(3, 7, 7)
    rel = 0.2 * np.logspace(0, -1, 7)  # relative SE: 20 % down to 2 %
    y = 3 * x**-0.3 * np.exp(rng.normal(0, 0.3 * rel))  # scatter well inside the SEs: τ² = 0
    fit = fit_power(x, y, se=rel * y)
    w = 1 / rel**2
    design = np.stack([np.ones(7), np.log(x)], axis=1)
    cov = np.linalg.inv(design.T @ (design * w[:, None]))
    coef = cov @ design.T @ (w * np.log(y))
    s2 = float((w * (np.log(y) - design @ coef) ** 2).sum() / 5)
    half = stats.t.ppf(0.975, 5) * np.sqrt(s2 * cov[1, 1])
    np.testing.assert_allclose(fit.ci["beta"], [-coef[1] - half, -coef[1] + half], rtol=1e-8)
    assert "standard errors" in fit.weighting and fit.dof == 5
    assert fit.resid_sd == pytest.approx(np.sqrt(s2 / w.mean()), rel=1e-6)  # weights mean 1
    unweighted = fit_power(x, y, se=np.where(np.arange(7) == 3, np.nan, rel * y))
    assert unweighted.weighting == "unweighted"  # a missing SE: no weights at all


def test_unequal_seed_counts_weight_cells_by_count_and_shared_scatter():
    rng = np.random.default_rng(1)
    x = np.repeat(np.logspace(3, 6, 5), [1, 2, 3, 4, 6])
    y = x**-0.3 * np.exp(rng.normal(0, 0.05, len(x)))
    cells = make_cells(x, y)
    assert len(cells.x) == 5 and list(cells.count) == [1, 2, 3, 4, 6]
    assert np.all(np.diff(cells.w) >= -1e-12) and cells.w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(np.log(cells.y), [np.log(y[x == v]).mean() for v in cells.x])


def test_curvature_flags_a_broken_law_and_not_a_clean_power_law():
    rng = np.random.default_rng(2)
    x = np.logspace(3, 7, 8)
    bent = fit_power(x, broken_law(x, 3, 0.1, 0.4, 1e5, 0.5) * np.exp(rng.normal(0, .05, 8)))
    assert bent.ok and "curvature" in bent.flags and bent.p_curv < 0.01
    straight = fit_power(x, 3 * x**-0.3 * np.exp(rng.normal(0, 0.05, 8)))
    assert straight.ok and straight.p_curv > 0.05 and straight.flags == []


def test_broken_form_recovers_both_exponents_and_the_break():
    rng = np.random.default_rng(3)
    x = np.logspace(3, 7, 10)
    y = broken_law(x, 3, 0.1, 0.4, 1e5, 0.5) * np.exp(rng.normal(0, 0.01, 10))
    fit = fit_law("broken", x, y)
    assert fit.ok and fit.p_break < 0.01
    for key, truth in (("b1", 0.1), ("b2", 0.4)):
        assert fit.ci[key][0] < truth < fit.ci[key][1]
        assert fit.params[key] == pytest.approx(truth, abs=0.05)
    assert fit.ci["Nb"][0] < 1e5 < fit.ci["Nb"][1]
    np.testing.assert_allclose(predict("broken", fit.params, x), y, rtol=0.03)
    power = fit_law("broken", x, 3 * x**-0.3 * np.exp(rng.normal(0, 0.01, 10)))
    assert power.status == "unidentifiable" and "no break" in power.reason


def test_leave_largest_out_flag_when_the_largest_size_leaves_the_law():
    rng = np.random.default_rng(4)
    x = np.logspace(3, 7, 7)
    y = 3 * x**-0.3 * np.exp(rng.normal(0, 0.02, 7))
    y[-1] *= 0.6  # the largest size falls well below the trend of the others
    fit = fit_power(x, y)
    assert "extrapolation" in fit.flags and fit.p_extrap < 0.05


def test_collinear_axes_are_named_and_fitted_along_the_runs():
    rng = np.random.default_rng(5)
    n = np.logspace(4, 7, 6)
    y = (50 / n**0.35 + 8 / (10 * n) ** 0.35) * np.exp(rng.normal(0, 0.03, 6))
    fit = fit_law("joint", n, y, d=10 * n)
    assert fit.status == "collinear" and "cannot be separated" in fit.reason
    assert fit.ci["beta"][0] < 0.35 < fit.ci["beta"][1]
    assert fit.params["k"] == pytest.approx(1.0)


def test_frontier_interval_of_the_test_loss_includes_the_selection():
    rng = np.random.default_rng(6)
    c, loss, n, d = frontier_runs(rng, 0.15)
    fit = frontier_fits(c, loss, forms=("power",), n_perm=50, runs=(n, d))[2][0]
    assert fit.ok and "bootstrap" in fit.interval
    t_only = fit_law("power", *frontier_fits(c, loss, forms=("power",), n_perm=50)[:2])
    assert np.ptp(fit.ci["beta"]) > np.ptp(t_only.ci["beta"])
    assert fit.ci["beta"][0] < frontier_truth() < fit.ci["beta"][1]


def test_table_row_shows_the_curvature_p_and_a_warning_when_it_rejects():
    from mlip_scaling.scaling.report_page import FIT_COLUMNS, NO_SE_CAVEAT, fit_table

    rng = np.random.default_rng(2)
    x = np.logspace(3, 7, 8)
    fit = fit_power(x, broken_law(x, 3, 0.1, 0.4, 1e5, 0.5) * np.exp(rng.normal(0, .05, 8)))
    row = {"family": "f", "metric": "test_loss", "axis": "data", "slice": {}, **fit.to_dict()}
    cells = dict(zip(FIT_COLUMNS, fit_table([row])[0]))
    assert float(cells["p (curvature)"]) == pytest.approx(fit.p_curv, rel=0.05)
    assert "WARNING: the log-log plot bends" in cells["status"]
    assert NO_SE_CAVEAT in cells["status"]  # fitted without standard errors: caveat
    bent = broken_law(x, 3, 0.1, 0.4, 1e5, 0.5) * np.exp(rng.normal(0, 0.01, 8))
    fit = fit_power(x, bent, se=0.01 * bent)  # SEs recorded: no caveat
    row = {"family": "f", "metric": "test_loss", "axis": "data", "slice": {}, **fit.to_dict()}
    status = dict(zip(FIT_COLUMNS, fit_table([row])[0]))["status"]
    assert "WARNING: the log-log plot bends" in status and NO_SE_CAVEAT not in status
