"""Scaling-law fits recover planted laws; intervals cover the truth; bad data gives no law."""

from __future__ import annotations

import numpy as np
import pytest

from mlip_scaling.scaling.fit import (
    fit_floor,
    fit_frontier,
    fit_joint,
    fit_power,
    frontier,
    predict,
)


def test_pure_power_law_is_exact_without_noise():
    x = np.logspace(3, 7, 6)
    fit = fit_power(x, 2.5 * x**-0.27, n_boot=20)
    assert fit.ok
    assert fit.params["beta"] == pytest.approx(0.27, rel=1e-9)
    assert fit.params["alpha"] == pytest.approx(2.5, rel=1e-9)
    assert fit.extrapolation_error == pytest.approx(0.0, abs=1e-9)


def test_floor_form_recovered_at_two_percent_noise():
    rng = np.random.default_rng(1)
    x = np.logspace(3, 8, 10)
    y = (0.05 + 30.0 * x**-0.4) * np.exp(rng.normal(0, 0.02, len(x)))
    fit = fit_floor(x, y, n_boot=30)
    assert fit.ok
    assert fit.params["b"] == pytest.approx(0.4, rel=0.1)
    assert fit.params["E"] == pytest.approx(0.05, rel=0.15)
    assert fit.ci["b"][0] < fit.params["b"] < fit.ci["b"][1]


def test_joint_form_recovers_both_exponents():
    rng = np.random.default_rng(2)
    n = np.repeat(np.logspace(4, 7, 4), 4)
    d = np.tile(np.logspace(2, 5, 4), 4)
    y = (0.02 + 50 / n**0.35 + 8 / d**0.3) * np.exp(rng.normal(0, 0.01, len(n)))
    fit = fit_joint(n, d, y, n_boot=10)
    assert fit.ok
    assert fit.params["a"] == pytest.approx(0.35, rel=0.15)
    assert fit.params["b"] == pytest.approx(0.30, rel=0.15)
    np.testing.assert_allclose(predict("joint", fit.params, n, d), y, rtol=0.05)


def test_interval_covers_truth_in_most_repetitions():
    x = np.logspace(3, 7, 5)
    covered = 0
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        y = 3.0 * x**-0.3 * np.exp(rng.normal(0, 0.05, len(x)))
        fit = fit_power(x, y, n_boot=60, seed=seed)
        covered += fit.ci["beta"][0] <= 0.3 <= fit.ci["beta"][1]
    assert covered >= 24  # >= 80 % of 30 (nominal 95 %; bootstrap over 5 runs: ~86 %)


def test_too_few_points_and_flat_data_give_no_exponent():
    few = fit_power([10, 100], [1.0, 0.5])
    assert few.status == "insufficient" and few.exponent is None and "distinct" in few.reason
    rng = np.random.default_rng(3)
    flat = fit_power(np.logspace(2, 6, 8), 1.0 + rng.normal(0, 0.01, 8), n_boot=40)
    assert flat.status == "no-trend" and flat.params == {}
    rising = fit_power(np.logspace(2, 6, 5), np.logspace(0, 1, 5))
    assert rising.status == "no-trend"
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
        fit = fit_floor(x, y, n_boot=10, seed=seed)
        assert fit.ok, fit.reason
        errors.append([fit.params["E"] / 0.05 - 1, fit.params["b"] / 0.4 - 1])
    assert np.median(np.abs(errors), axis=0).max() < 0.1


def test_leave_largest_out_error_small_for_power_law_and_large_for_a_kink():
    x = np.logspace(3, 7, 6)
    rng = np.random.default_rng(5)
    clean = fit_power(x, 3.0 * x**-0.3 * np.exp(rng.normal(0, 0.01, 6)), n_boot=20)
    assert clean.extrapolation_error < 0.05
    kinked = 3.0 * x**-0.3
    kinked[-1] *= 3.0  # the largest run breaks the law
    assert fit_power(x, kinked, n_boot=20).extrapolation_error > 0.5


def test_floor_is_unidentifiable_when_data_never_approach_it():
    x = np.logspace(2, 3, 5)  # one decade, far above the floor's scale
    rng = np.random.default_rng(6)
    y = (0.2 + 5.0 * x**-0.3) * np.exp(rng.normal(0, 0.03, 5))
    fit = fit_floor(x, y, n_boot=40)
    assert not fit.ok and fit.exponent is None and fit.params == {}
    assert fit.status in {"unidentifiable", "no-trend"} and fit.reason


def test_compute_frontier_fit_on_synthetic_runs():
    # runs of 4 model sizes x 4 data sizes: loss = E + A/N^a + B/D^b, compute 6·N·D
    rng = np.random.default_rng(7)
    n = np.repeat(np.logspace(4, 7, 4), 4)
    d = np.tile(np.logspace(3, 6, 4), 4)
    loss = (0.01 + 40 / n**0.4 + 20 / d**0.4) * np.exp(rng.normal(0, 0.01, 16))
    c, l, fit = fit_frontier(6 * n * d, loss, n_boot=30)
    assert np.all(np.diff(c) > 0) and np.all(np.diff(l) < 0)
    assert fit.ok and fit.form in {"floor", "power"}
    gamma = fit.exponent
    assert 0.05 < gamma < 0.4  # compute exponent ~ a·b/(a+b)/... below the parameter ones
    assert fit.ci[{"floor": "b", "power": "beta"}[fit.form]][0] > 0
    few_c, few_l, few = fit_frontier([1e12, 2e12], [1.0, 0.5])
    assert few.status == "insufficient" and few.exponent is None
