"""What a fit row says about its decision: the p-value that decided it, a significant
increase read as an increase, and p-values near the threshold marked borderline."""

from __future__ import annotations

import numpy as np

from mlip_scaling.scaling.fit import ALPHA, fit_law
from mlip_scaling.scaling.frontier import frontier_fit
from mlip_scaling.scaling.report_page import BORDERLINE, is_borderline, p_text


def test_frontier_cell_shows_the_f_test_that_decided_it():
    # five frontier points with a weak decrease: the F-test on them says "no trend"
    c = np.array([1e12, 2e12, 4e12, 8e12, 1.6e13])
    m = np.array([0.50, 0.40, 0.52, 0.38, 0.45])
    decided = fit_law("power", c, m)
    assert decided.status == "no-trend" and decided.p_trend >= ALPHA
    fit = frontier_fit("power", c, m, p_perm=0.031)  # a permutation null below 0.05
    assert fit.status == "no-trend"
    assert fit.p_trend == decided.p_trend and fit.p_perm == 0.031
    assert f"p={decided.p_trend:.3g}" in fit.reason


def test_a_significant_increase_reads_as_an_increase():
    x = np.array([100.0, 200.0, 400.0, 800.0, 1600.0])
    up = fit_law("power", x, 0.1 * x**0.58 * np.array([1.0, 1.02, 0.98, 1.01, 0.99]))
    assert up.status == "no-trend" and up.p_trend < ALPHA
    assert up.reason.startswith("loss increases (log-log slope 0.5")
    flat = fit_law("power", x, np.array([1.0, 0.9, 1.1, 1.05, 1.0]))
    assert "increases" not in flat.reason


def test_p_values_near_the_threshold_are_marked_borderline():
    lo, hi = BORDERLINE
    assert [is_borderline(p) for p in (None, lo, 0.011, 0.05, 0.099, hi, 0.3)] == [
        False, False, True, True, True, False, False]
    row = {"p_trend": 0.07, "p_floor": None, "p_perm": None}
    assert p_text(row) == "0.07 borderline"
    assert p_text({**row, "p_trend": 0.001}) == "0.001"
