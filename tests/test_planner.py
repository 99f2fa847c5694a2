"""Study planner: the minimal detectable exponent has power 0.8 in simulation, the resolve
probability matches simulation, a grid called sufficient resolves the planted exponent,
the noise of a pilot is recovered, and ``mlip-scaling plan`` runs from a pilot or flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_report import synthetic_records, write_results

from mlip_scaling.scaling.cli import main
from mlip_scaling.scaling.fit import fit_law
from mlip_scaling.scaling.plan_calibration import planner_check, planner_check_table
from mlip_scaling.scaling.plan_study import noise_from_records
from mlip_scaling.scaling.planner import (
    Grid,
    Noise,
    detectable_exponent,
    estimate_noise,
    log_sizes,
    plan_grid,
    resolve_probability,
    row_detectable,
    size_variances,
)


def _detect_rate(sizes, sd, beta, reps, rng) -> float:
    x = np.asarray(sizes)
    hits = 0
    for _ in range(reps):
        y = 0.1 * (x / x[0]) ** -beta * np.exp(rng.normal(0, sd, len(x)))
        hits += fit_law("power", x, y).ok
    return hits / reps


@pytest.mark.parametrize("k", [4, 6])
def test_detectable_exponent_is_detected_with_power_0_8(k):
    sizes, sd = log_sizes(1e3, 1e5, k), 0.1
    mde = detectable_exponent(sizes, np.full(k, sd**2))
    rate = _detect_rate(sizes, sd, mde, 1500, np.random.default_rng(k))
    assert abs(rate - 0.8) < 0.035  # 3.5 SE of 1500 repetitions
    assert _detect_rate(sizes, sd, mde / 3, 600, np.random.default_rng(9)) < 0.4


def test_resolve_probability_matches_simulation_with_skewed_evaluation_noise():
    noise = Noise("m", sigma_run=0.03, sigma_eval=1 / np.sqrt(20), count_ref=20,
                  count_kind="relaxations")
    grid = Grid(log_sizes(1e4, 1e6, 5), seeds=2, relaxations=160)
    p = resolve_probability(0.1, 0.05, grid.sizes, size_variances(noise, grid))
    sim = planner_check(grid.sizes, 2, 160, 0.1, 0.05, 0.03, 1.0, reps=400, seed=4)
    assert abs(sim - p) < 3.5 * np.sqrt(p * (1 - p) / 400) + 0.01


def test_grid_called_sufficient_resolves_the_planted_exponent_fast_subset():
    row = planner_check_table(150, seed=2)[0]
    se = np.sqrt(0.9 * 0.1 / 150)
    assert row["status"] == "ok" and row["predicted"] >= 0.9
    assert row["simulated"] >= 0.9 - 3 * se
    assert row["fewer_sizes_predicted"] < 0.9  # the plan is the cheapest such grid
    assert abs(row["fewer_sizes_simulated"] - row["fewer_sizes_predicted"]) < 4 * se + 0.02


@pytest.mark.slow
def test_grids_called_sufficient_resolve_the_planted_exponent():
    rows = planner_check_table(2000, seed=1)
    for row in rows:
        se = np.sqrt(0.9 * 0.1 / 2000)
        assert row["status"] == "ok" and row["simulated"] >= 0.9 - 2.5 * se
        assert abs(row["simulated"] - row["predicted"]) < 3 * se + 0.005
    assert np.mean([r["simulated"] for r in rows]) >= 0.9


def test_more_evaluations_or_sizes_shrink_the_detectable_exponent():
    noise = Noise("m", sigma_shared=0.02, sigma_run=0.05, sigma_eval=0.2, count_ref=20,
                  count_kind="relaxations")
    base = Grid(log_sizes(1e4, 1e6, 5), 1, relaxations=20)

    def mde(grid):
        return detectable_exponent(grid.sizes, size_variances(noise, grid))

    assert mde(Grid(base.sizes, 1, relaxations=80)) < mde(base)
    assert mde(Grid(log_sizes(1e4, 1e6, 9), 1, relaxations=20)) < mde(base)
    # the shared scatter is not reduced by seeds or relaxations: a floor on the MDE
    floor = detectable_exponent(base.sizes, np.full(5, 0.02**2))
    assert mde(Grid(base.sizes, 10**6, relaxations=10**6)) == pytest.approx(floor, rel=1e-3)


def test_unreachable_target_says_so():
    noise = Noise("m", sigma_shared=0.3)
    out = plan_grid(noise, 0.05, 0.01, 1e4, 1e5)
    assert out["status"] == "unreachable" and "widen the size range" in out["reason"]


def test_pilot_noise_components_are_recovered():
    rng = np.random.default_rng(0)
    sizes = np.repeat(log_sizes(1e3, 1e6, 40), 4)
    shared = np.repeat(rng.normal(0, 0.05, 40), 4)
    rel = 0.1  # evaluation noise at the pilot's count
    y = 0.3 * sizes**-0.2 * np.exp(shared + rng.normal(0, 0.08, len(sizes))
                                   + rng.normal(0, rel, len(sizes)))
    noise = estimate_noise("m", sizes, y, np.full(len(sizes), rel), 50, "relaxations")
    assert noise.sigma_run == pytest.approx(0.08, abs=0.02)
    assert noise.sigma_shared == pytest.approx(0.05, abs=0.02)
    assert noise.sigma_eval == pytest.approx(rel) and noise.count_ref == 50
    single = estimate_noise("m", sizes[::4], y[::4])
    assert single.sigma_run == 0 and "no replicate" in single.note
    assert single.sigma_shared == pytest.approx(np.sqrt(0.05**2 + 0.08**2 + rel**2), abs=0.03)


def test_row_detectable_for_power_and_joint_rows():
    x = np.array(log_sizes(1e3, 1e5, 6))
    y = x**-0.3 * np.exp(np.array([0.05, -0.05, 0.02, 0.0, -0.03, 0.01]))
    mde = row_detectable({"form": "power", "x": x.tolist(), "y": y.tolist()})
    assert 0 < mde < 0.3
    assert row_detectable({"form": "power", "x": [1.0, 2.0], "y": [1.0, 0.5]}) is None
    n, d = (v.ravel() for v in np.meshgrid(x[:4], x[:4] / 10))
    yj = n**-0.3 + d**-0.2 * np.exp(np.random.default_rng(1).normal(0, 0.02, n.size))
    out = row_detectable({"form": "joint", "x": n.tolist(), "y": yj.tolist(), "d": d.tolist()})
    assert set(out) == {"a", "b"} and min(out.values()) > 0


def _pilot(tmp_path):
    records = [r for r in synthetic_records() if r["status"] == "ok"]
    rng = np.random.default_rng(2)
    for r in records:
        r["settings"] = {"k_relax": 10, "md_steps": 200}
        r["metrics"]["relax_rmsd"] *= float(np.exp(rng.normal(0, 0.1)))
        r["metrics"]["relax_rmsd_se"] = 0.1 * r["metrics"]["relax_rmsd"]
    write_results(tmp_path / "scaling_results.json", records)
    return records


def test_noise_from_records_reads_the_evaluation_counts(tmp_path):
    found = noise_from_records(_pilot(tmp_path), "params")
    relax = next(n for n in found["eqv2"] if n.metric == "relax_rmsd")
    assert relax.count_kind == "relaxations" and relax.count_ref == 10
    assert relax.sigma_eval == pytest.approx(0.1)
    test = next(n for n in found["eqv2"] if n.metric == "test_loss")
    assert test.count_kind == "" and test.sigma_eval == 0


def test_plan_cli_from_pilot_and_from_given_noise(tmp_path, capsys):
    _pilot(tmp_path)
    out = tmp_path / "plan.json"
    assert main(["plan", str(tmp_path), "--relaxations", "40", "--beta", "0.2",
                 "--half-width", "0.1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "MDE" in text and "relax_rmsd" in text
    plan = json.loads(out.read_text())
    row = next(r for r in plan["eqv2"] if r["metric"] == "relax_rmsd")
    assert row["count"] == 40 and row["needed"]["status"] in ("ok", "unreachable")
    assert main(["plan", "--sizes", "1e4,1e5,1e6", "--sigma-run", "0.05"]) == 0
    for argv, says in ((["plan", "--sizes", "1,2,3"], "noise levels"),
                       (["plan", "--sigma-run", "0.1"], "--sizes"),
                       (["plan", str(tmp_path), "--beta", "0.1"], "--half-width")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and says in capsys.readouterr().err


def test_pinned_sizes_leave_the_evaluation_count_to_choose():
    noise = Noise("m", sigma_run=0.02, sigma_eval=0.3, count_ref=20, count_kind="md_steps")
    out = plan_grid(noise, 0.2, 0.08, 1e4, 1e6, min_sizes=5, max_sizes=5, max_seeds=1)
    grid = out["grid"]
    assert out["status"] == "ok" and len(grid.sizes) == 5 and grid.seeds == 1
    half = Grid(grid.sizes, 1, md_steps=grid.md_steps // 2)
    assert out["p_resolve"] >= 0.9 > resolve_probability(0.2, 0.08, half.sizes,
                                                         size_variances(noise, half))
