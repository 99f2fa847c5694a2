"""Scaling-law fits recover planted laws; intervals cover the truth; bad data gives no law."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlip_scaling.scaling.fit import fit_floor, fit_joint, fit_law, fit_power, predict
from mlip_scaling.scaling.frontier import fit_frontier, frontier, frontier_fits, frontier_null


def test_pure_power_law_is_exact_without_noise():
    x = np.logspace(3, 7, 6)
    fit = fit_power(x, 2.5 * x**-0.27)
    assert fit.ok
    assert fit.params["beta"] == pytest.approx(0.27, rel=1e-9)
    assert fit.params["alpha"] == pytest.approx(2.5, rel=1e-9)
    assert fit.extrapolation_error == pytest.approx(0.0, abs=1e-9)


def test_floor_form_recovered_at_two_percent_noise():
    rng = np.random.default_rng(1)
    x = np.logspace(3, 8, 10)
    y = (0.05 + 30.0 * x**-0.4) * np.exp(rng.normal(0, 0.02, len(x)))
    fit = fit_floor(x, y)
    assert fit.ok
    assert fit.params["b"] == pytest.approx(0.4, rel=0.1)
    assert fit.params["E"] == pytest.approx(0.05, rel=0.15)
    assert fit.ci["b"][0] < fit.params["b"] < fit.ci["b"][1]


def test_joint_form_recovers_both_exponents():
    rng = np.random.default_rng(2)
    n = np.repeat(np.logspace(4, 7, 4), 4)
    d = np.tile(np.logspace(2, 5, 4), 4)
    y = (0.02 + 50 / n**0.35 + 8 / d**0.3) * np.exp(rng.normal(0, 0.01, len(n)))
    fit = fit_joint(n, d, y)
    assert fit.ok
    assert fit.params["a"] == pytest.approx(0.35, rel=0.15)
    assert fit.params["b"] == pytest.approx(0.30, rel=0.15)
    np.testing.assert_allclose(predict("joint", fit.params, n, d), y, rtol=0.05)


def test_replicates_are_averaged_per_size_and_the_t_interval_has_sizes_minus_two_dof():
    rng = np.random.default_rng(8)
    sizes = np.logspace(3, 6, 4)
    x = np.repeat(sizes, 3)  # 4 sizes x 3 seeds: the fit is on the 4 per-size means
    y = 2.0 * x**-0.25 * np.exp(rng.normal(0, 0.05, len(x)))
    fit = fit_power(x, y)
    ref = stats.linregress(np.log(sizes), np.log(y).reshape(4, 3).mean(1))
    half = stats.t.ppf(0.975, 4 - 2) * ref.stderr
    np.testing.assert_allclose(fit.ci["beta"], [-ref.slope - half, -ref.slope + half],
                               rtol=1e-9)
    np.testing.assert_allclose(fit.p_trend, ref.pvalue, rtol=1e-6)
    assert fit.indicative and fit.n_sizes == 4 and fit.n_points == 12 and fit.n_cells == 4
    assert fit.dof == 2 and fit.se["beta"] == pytest.approx(ref.stderr, rel=1e-9)
    assert fit.interval.startswith("t") and len(fit.band["x"]) == len(fit.band["lo"])
    assert "seeds averaged" in fit.weighting
    assert not fit_power(np.logspace(3, 6, 5), 2.0 * np.logspace(3, 6, 5) ** -0.25).indicative


def test_too_few_points_and_flat_data_give_no_exponent():
    few = fit_power([10, 100], [1.0, 0.5])
    assert few.status == "insufficient" and few.exponent is None and "distinct" in few.reason
    rng = np.random.default_rng(3)
    flat = fit_power(np.logspace(2, 6, 8), 1.0 + rng.normal(0, 0.01, 8))
    assert flat.status == "no-trend" and flat.params == {} and "p=" in flat.reason
    assert 0.05 <= flat.p_trend <= 1
    rising = fit_power(np.logspace(2, 6, 5), np.logspace(0, 1, 5))
    assert rising.status == "no-trend"
    constant = fit_power(np.logspace(1, 3, 6), np.ones(6))  # e.g. relaxations that never move
    assert constant.status == "no-trend" and constant.p_trend == 1.0
    assert constant.reason == "constant: every value is 1"
    nan = fit_power([10, 100, 1000, np.nan], [1.0, np.nan, 0.5, 0.3])
    assert nan.status == "insufficient" and nan.n_points == 2


def test_compute_frontier_keeps_running_minimum():
    compute = np.array([1e12, 2e12, 4e12, 3e12, 8e12, 1e13])
    loss = np.array([1.0, 1.2, 0.7, 0.8, 0.75, 0.5])
    c, l = frontier(compute, loss)
    np.testing.assert_allclose(c, [1e12, 3e12, 4e12, 1e13], rtol=1e-12)
    np.testing.assert_allclose(l, [1.0, 0.8, 0.7, 0.5], rtol=1e-12)


def test_floor_form_over_seeds_within_ten_percent():
    x = np.logspace(3, 8, 10)
    errors = []
    for seed in range(6):
        rng = np.random.default_rng(40 + seed)
        y = (0.05 + 30.0 * x**-0.4) * np.exp(rng.normal(0, 0.02, len(x)))
        fit = fit_floor(x, y)
        assert fit.ok, fit.reason
        errors.append([fit.params["E"] / 0.05 - 1, fit.params["b"] / 0.4 - 1])
    assert np.median(np.abs(errors), axis=0).max() < 0.1


def test_leave_largest_out_error_small_for_power_law_and_large_for_a_kink():
    x = np.logspace(3, 7, 6)
    rng = np.random.default_rng(5)
    clean = fit_power(x, 3.0 * x**-0.3 * np.exp(rng.normal(0, 0.01, 6)))
    assert clean.extrapolation_error < 0.05
    kinked = 3.0 * x**-0.3
    kinked[-1] *= 3.0  # the largest run breaks the law
    assert fit_power(x, kinked).extrapolation_error > 0.5


def test_floor_is_unidentifiable_when_data_never_approach_it():
    x = np.logspace(2, 3, 5)  # one decade, far above the floor's scale
    rng = np.random.default_rng(6)
    y = (0.2 + 5.0 * x**-0.3) * np.exp(rng.normal(0, 0.03, 5))
    fit = fit_floor(x, y)
    assert not fit.ok and fit.exponent is None and fit.params == {}
    assert fit.status in {"unidentifiable", "no-trend"} and fit.reason


def test_compute_frontier_fit_on_synthetic_runs():
    # runs of 4 model sizes x 4 data sizes: loss = E + A/N^a + B/D^b, compute 6·N·D
    rng = np.random.default_rng(7)
    n = np.repeat(np.logspace(4, 7, 4), 4)
    d = np.tile(np.logspace(3, 6, 4), 4)
    loss = (0.01 + 40 / n**0.4 + 20 / d**0.4) * np.exp(rng.normal(0, 0.01, 16))
    c, l, fit = fit_frontier(6 * n * d, loss)
    assert np.all(np.diff(c) > 0) and np.all(np.diff(l) < 0)
    assert fit.ok and fit.form in {"floor", "power"}
    gamma = fit.exponent
    assert 0.05 < gamma < 0.4  # compute exponent ~ a·b/(a+b)/... below the parameter ones
    assert fit.ci[{"floor": "b", "power": "beta"}[fit.form]][0] > 0
    few_c, few_l, few = fit_frontier([1e12, 2e12], [1.0, 0.5])
    assert few.status == "insufficient" and few.exponent is None


def test_floor_needs_to_beat_the_pure_power_law():
    rng = np.random.default_rng(9)
    x = np.logspace(3, 8, 8)
    pure = fit_floor(x, 3.0 * x**-0.3 * np.exp(rng.normal(0, 0.02, 8)))
    assert pure.status == "unidentifiable" and pure.p_floor >= 0.05 and "power law" in pure.reason
    floored = fit_floor(x, (0.05 + 30 * x**-0.4) * np.exp(rng.normal(0, 0.02, 8)))
    assert floored.ok and floored.p_floor < 1e-3 and floored.p_trend < 0.05
    lo, hi = floored.ci["E"]
    assert lo < floored.params["E"] < hi <= floored.params["E"] * 1.5
    assert floored.interval.startswith("profile")


def test_joint_form_refuses_an_axis_without_dependence():
    rng = np.random.default_rng(10)
    n = np.repeat(np.logspace(4, 7, 5), 5)
    d = np.tile(np.logspace(2, 5, 5), 5)
    y = (0.02 + 50 / n**0.35) * np.exp(rng.normal(0, 0.02, len(n)))  # no D dependence
    fit = fit_joint(n, d, y)
    assert fit.status == "no-trend" and fit.params == {} and "none with D (" in fit.reason
    assert "with N or" not in fit.reason and fit.p_trend >= 0.05  # only D is missing


def test_leave_largest_out_refits_from_scratch():
    rng = np.random.default_rng(11)
    x = np.logspace(3, 8, 9)
    y = (0.05 + 30 * x**-0.4) * np.exp(rng.normal(0, 0.02, 9))
    full = fit_floor(x, y)
    alone = fit_law("floor", x[:-1], y[:-1])  # the refit, done independently
    expected = abs(predict("floor", alone.params, x[-1:])[0] / y[-1] - 1)
    assert full.extrapolation_error == pytest.approx(expected, rel=1e-6)


def test_frontier_of_a_metric_without_compute_dependence_gets_no_exponent():
    rng = np.random.default_rng(14)
    n = np.repeat(np.logspace(4, 7, 4), 4)
    d = np.tile(np.logspace(3, 6, 4), 4)
    loss = (0.01 + 40 / n**0.4 + 20 / d**0.4) * np.exp(rng.normal(0, 0.01, 16))
    noise = np.exp(rng.normal(0, 0.3, 16))  # a downstream metric that ignores compute
    c, m, fits = frontier_fits(6 * n * d, loss, noise, n_perm=200)
    assert len(c) >= 4 and all(f.status in {"no-trend", "insufficient", "unidentifiable"}
                               for f in fits)
    assert fits[0].p_perm is not None and "permutation" in fits[0].reason
    # chosen by test loss: the frontier runs are the loss frontier's, not the metric's
    np.testing.assert_allclose(c, frontier(6 * n * d, loss)[0])
    related = loss**1.5 * np.exp(rng.normal(0, 0.01, 16))
    _, _, fits = frontier_fits(6 * n * d, loss, related, n_perm=200)
    assert fits[0].ok and fits[0].p_perm < 0.05


def test_frontier_null_is_a_uniform_p_value_for_shuffled_metrics():
    rng = np.random.default_rng(13)
    compute = np.logspace(10, 16, 12)
    loss = 5 * compute**-0.1
    pvals = [frontier_null(compute, loss, rng.lognormal(0, 0.3, 12), n_perm=100,
                           seed=k)[2] for k in range(60)]
    assert 0.01 <= np.mean(np.asarray(pvals) < 0.05) <= 0.15
    observed, null, p = frontier_null(compute, loss, loss, n_perm=100, reselect=True)
    assert observed == pytest.approx(0.1) and len(null) > 50 and 0 < p <= 1


def test_plotted_power_band_is_the_t_band_of_the_line():
    from mlip_scaling.scaling.plots import law_band

    rng = np.random.default_rng(15)
    x = np.logspace(3, 6, 6)
    y = 2.0 * x**-0.3 * np.exp(rng.normal(0, 0.05, 6))
    fit = fit_power(x, y)
    lo, hi = law_band(fit.to_dict(), x)
    u, v = np.log(x), np.log(y)
    ref = stats.linregress(u, v)
    s = np.sqrt(((v - ref.intercept - ref.slope * u) ** 2).sum() / 4)
    half = stats.t.ppf(0.975, 4) * s * np.sqrt(1 / 6 + (u - u.mean()) ** 2
                                               / ((u - u.mean()) ** 2).sum())
    np.testing.assert_allclose(np.log(hi) - np.log(lo), 2 * half, rtol=1e-3)
    assert law_band({"band": {}}, x) is None
