"""Compute-optimal allocation: the closed form against a numerical optimum, planted
exponents recovered and covered by the bootstrap intervals, one-line refusals, and the
report's allocation section."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from test_report import FAMILIES, synthetic_records, write_results

from mlip_scaling.scaling.allocation import allocate, fit_cost, optimal_allocation
from mlip_scaling.scaling.fit import predict
from mlip_scaling.scaling.plan_calibration import ALLOCATION_TRUTH, allocation_coverage
from mlip_scaling.scaling.report import write_report

PARAMS = {"E": 0.02, "A": 50.0, "a": 0.35, "B": 8.0, "b": 0.3}


@pytest.mark.parametrize("gamma,delta", [(1.0, 1.0), (0.8, 1.0), (1.3, 0.9)])
def test_closed_form_is_the_numerical_optimum_on_the_budget(gamma, delta):
    cost = {"kappa": 2e3, "gamma": gamma, "delta": delta}
    budgets = np.array([1e10, 1e13, 1e16])
    out = optimal_allocation(PARAMS, cost, budgets)
    for i, c in enumerate(budgets):
        def loss(logn, c=c):
            d = (c / (cost["kappa"] * np.exp(logn) ** gamma)) ** (1 / delta)
            return float(predict("joint", PARAMS, np.exp(logn), d))

        best = minimize_scalar(loss, bounds=(0, 60), method="bounded",
                               options={"xatol": 1e-10})
        assert np.log(out["n"][i]) == pytest.approx(best.x, abs=1e-4)
        assert out["loss"][i] == pytest.approx(best.fun, rel=1e-9)
        spent = cost["kappa"] * out["n"][i] ** gamma * out["d"][i] ** delta
        assert spent == pytest.approx(c, rel=1e-9)  # the whole budget, no more
    slope_n = np.diff(np.log(out["n"])) / np.diff(np.log(budgets))
    assert slope_n == pytest.approx([out["a"]] * 2, rel=1e-9)
    assert gamma * out["a"] + delta * out["b"] == pytest.approx(1.0)


def test_chinchilla_exponents_when_cost_is_linear_in_n_and_d():
    out = optimal_allocation(PARAMS, {"kappa": 6.0, "gamma": 1.0, "delta": 1.0}, [1e15])
    assert out["a"] == pytest.approx(0.3 / 0.65) and out["b"] == pytest.approx(0.35 / 0.65)


def _planted_runs(noise: float, seed: int = 0, sizes: int = 4):
    t = ALLOCATION_TRUTH
    rng = np.random.default_rng(seed)
    n, d = (v.ravel() for v in np.meshgrid(np.logspace(4, 7, sizes), np.logspace(2, 5, sizes),
                                           indexing="ij"))
    y = (t["E"] + t["A"] / n ** t["a"] + t["B"] / d ** t["b"]) * np.exp(
        rng.normal(0, noise, n.size))
    c = t["kappa"] * n ** t["gamma"] * d * np.exp(rng.normal(0, 0.05, n.size))
    return n, d, y, c


def test_planted_allocation_recovered_with_measured_cost():
    n, d, y, c = _planted_runs(0.005)
    cost = fit_cost(n, d, c)
    assert cost["gamma"] == pytest.approx(0.9, abs=0.05) and cost["scatter"] < 0.08
    res = allocate(n, d, y, c, budgets=[1e11, 1e16], n_boot=20)
    t = ALLOCATION_TRUTH
    true_a = t["b"] / (t["a"] + t["gamma"] * t["b"])
    assert res["status"] == "ok" and res["a"] == pytest.approx(true_a, abs=0.03)
    assert res["a_ci"][0] < res["a"] < res["a_ci"][1]
    assert [r["extrapolated"] for r in res["table"]] == [False, True]
    row = res["table"][0]
    assert row["n_ci"][0] < row["n"] < row["n_ci"][1] and row["loss"] > t["E"]


def test_quick_coverage_of_planted_allocation_exponents():
    out = allocation_coverage(4, reps=8, n_boot=20, seed=3)
    assert out["fitted"] == 1.0
    assert out["cover_a"] >= 0.75 and out["cover_b"] >= 0.75  # 95 % coverage: >= 6 of 8


def test_seeds_sharing_their_cell_error_do_not_narrow_the_interval():
    n, d, y, c = _planted_runs(0.02, seed=4, sizes=5)
    single = allocate(n, d, y, c, budgets=[1e12], n_boot=30, seed=1)
    copies = [np.repeat(v, 3) for v in (n, d, y, c)]  # 3 seeds per cell, error fully shared
    shared = allocate(*copies, budgets=[1e12], n_boot=30, seed=1)
    width = [r["a_ci"][1] - r["a_ci"][0] for r in (single, shared)]
    # cells resampled, K - 5 d.o.f.: as wide as one run per cell (resampling the 75 runs
    # would average 3 independent residuals per cell and shrink the interval by ~sqrt(3))
    assert shared["a"] == pytest.approx(single["a"], abs=1e-6)
    assert 0.75 < width[1] / width[0] < 1.33


@pytest.mark.slow
def test_allocation_intervals_cover_the_planted_exponents():
    out = allocation_coverage(5, 200, n_boot=40, seed=1)
    assert out["fitted"] >= 0.98
    assert out["cover_a"] >= 0.93 and out["cover_b"] >= 0.93


def test_refusals_are_one_line_reasons():
    n, d, y, c = _planted_runs(0.01)
    assert "FLOPs" in allocate(n, d, y, np.full_like(c, np.nan))["reason"]
    mixed = c * np.exp(np.random.default_rng(1).normal(0, 1.0, c.size))
    res = allocate(n, d, y, mixed, n_boot=20)
    assert res["status"] == "not fitted" and "one power law" in res["reason"]
    line = np.logspace(4, 7, 12)  # D grows exactly with N: not separable
    res = allocate(line, line / 100, 3 * line**-0.3, 6 * line * line / 100, n_boot=20)
    assert res["status"] == "not fitted" and "joint law" in res["reason"]
    for r in (res,):
        assert "\n" not in r["reason"]


def test_report_writes_the_allocation_table_and_detectable_exponents(tmp_path):
    write_results(tmp_path / "scaling_results.json", synthetic_records())
    html, rows = write_report(tmp_path, tmp_path / "r", n_perm=20, quiet=True, n_boot=20)
    found = json.loads((tmp_path / "r" / "allocation.json").read_text())
    for family, (a, b) in FAMILIES.items():
        res = found[family]
        assert res["status"] == "ok" and res["cost"]["gamma"] == pytest.approx(1.0)
        assert res["a_ci"][0] - 0.05 < b / (a + b) < res["a_ci"][1] + 0.05
    page = html.read_text()
    assert "Compute-optimal allocation" in page and "min. detectable" in page
    power = [r for r in rows if r["form"] == "power" and r["n_sizes"] >= 3]
    assert power and all(r["mde"] > 0 for r in power)
    joint = next(r for r in rows if r["axis"] == "joint" and r["metric"] == "test_loss")
    assert set(joint["mde"]) == {"a", "b"}
