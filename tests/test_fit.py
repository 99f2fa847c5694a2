"""Scaling-law fits recover planted laws; intervals cover the truth; bad data gives no law."""

from __future__ import annotations

import numpy as np
import pytest

from mlip_scaling.scaling.fit import fit_floor, fit_joint, fit_power, frontier, predict


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
    assert covered >= 22  # >= ~75 % of 30 (nominal 95 %, wild bootstrap on 5 points)


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
    np.testing.assert_array_equal(c, [1e12, 3e12, 4e12, 1e13])
    np.testing.assert_array_equal(l, [1.0, 0.8, 0.7, 0.5])
