"""Planted-law calibration: interval coverage, false exponents on flat data, false floors
on floor-less data, curvature and extrapolation flags, broken and collinear laws, the
frontier of the test loss. A fast subset runs in CI; the full table (the repetitions and
seeds of benchmarks/fit_calibration.py, so its printed table is this test's evidence) is
marked slow. Goals are checked to within one Monte-Carlo standard error."""

from __future__ import annotations

import pytest

from mlip_scaling.scaling.fit_calibration import (
    SETTINGS,
    default_reps,
    default_seed,
    mc_error,
    run_setting,
)


@pytest.mark.parametrize("name", ["power-4", "power-5", "power-8"])
def test_power_law_t_interval_covers_at_few_sizes(name):
    s = run_setting(name, 200, seed=1)
    assert s.reported == 1.0
    assert s.coverage["beta"] >= 0.92
    assert abs(s.bias) < 0.01


def test_flat_data_gets_no_power_law_exponent():
    assert run_setting("flat-power", 400, seed=2).false_exponent <= 0.05


def test_floor_and_joint_profile_intervals_cover_fast_subset():
    floor = run_setting("floor-5", 40, seed=3)
    assert floor.reported >= 0.9 and floor.coverage["b"] >= 0.9
    joint = run_setting("joint-4", 20, seed=4)
    assert joint.reported >= 0.9 and min(joint.coverage.values()) >= 0.85


def test_floorless_and_flat_data_get_no_floor_and_no_joint_exponents():
    assert run_setting("nofloor-8", 40, seed=5).false_floor <= 0.1
    assert run_setting("flat-joint", 60, seed=6).false_exponent <= 0.05
    assert run_setting("flat-floor", 60, seed=7).false_exponent <= 0.05


def test_compute_frontier_of_an_unrelated_metric_rarely_gets_an_exponent():
    assert run_setting("frontier-null", 60, seed=8).false_exponent <= 0.08


def test_seeds_sharing_a_per_size_error_keep_the_interval_honest():
    s = run_setting("rep-power-5-r0.8", 400, seed=9)  # pooled runs covered ~70 % here
    assert s.reported == 1.0 and s.coverage["beta"] >= 0.92
    flat = run_setting("repflat-power-8-r0.8", 200, seed=10)
    assert flat.false_exponent <= 0.07


def test_recorded_standard_errors_keep_coverage_when_noise_falls_tenfold():
    s = run_setting("het-power-8-x10", 200, seed=12)
    assert s.coverage["beta"] >= 0.92 and s.rates["curvature flag"] <= 0.08


def test_bends_are_flagged_and_the_broken_form_covers():
    s = run_setting("broken-8", 30, seed=13)
    assert s.rates["curvature flag"] >= 0.9
    assert s.reported >= 0.9 and min(s.coverage.values()) >= 0.85


def test_complete_standard_errors_flag_the_break_at_five_sizes():
    s = run_setting("broken-5-se", 40, seed=14)  # t-test without SEs: ~85 % here
    assert s.rates["curvature flag"] >= 0.95
    flat = run_setting("power-5-se", 200, seed=15)
    assert flat.rates["curvature flag"] <= 0.05 + 2 * mc_error(0.05, 200)


#: measured shortfalls against the issue's goals (docs/fits.md): setting -> lower bound on
#: coverage used instead of 93 %
_SHORT = {
    "het-power-8-x10-nose": 0.88,  # no standard errors recorded: unweighted fallback
}
#: SEs of a run's own noise wrongly declared complete (the per-size error left out): the
#: known-variance curvature test flags true power laws (9.5-11.5 % measured), a limit
_WRONG_SE = ("rep-power-5-r0.5-se", "rep-power-8-r0.5-se")


def _goal(name: str) -> list[tuple[str, float, float, str]]:
    """(what, measured, goal, direction) of setting ``name`` in the full table."""
    s = run_setting(name, default_reps(name), seed=default_seed(name))
    kind, out = SETTINGS[name].kind, []
    if s.false_exponent is not None:
        out.append(("false exponent", s.false_exponent, 0.05, "<="))
    elif s.false_floor is not None:
        out.append(("false floor", s.false_floor, 0.10, "<="))
    elif s.coverage:
        out += [(f"coverage {k}", v, _SHORT.get(name, 0.93), ">=")
                for k, v in s.coverage.items()]
    if kind == "law" and name != "floor-4":
        out.append(("reported", s.reported, 0.9, ">="))
    for flag in ("curvature flag", "extrapolation flag", "broken chosen"):
        if flag in s.rates and kind != "broken" and SETTINGS[name].record_se and (
                name not in _WRONG_SE or flag != "curvature flag"):
            out.append((flag, s.rates[flag], 0.05, "<="))
    if kind == "broken":  # t-test with 2 residual d.o.f. at 5 sizes: below 90 % there
        full = SETTINGS[name].sizes >= 6 or SETTINGS[name].record
        out.append(("curvature flag", s.rates["curvature flag"], 0.9 if full else 0.8, ">="))
    if name == "floor-4":  # 4 sizes of 3 seeds: 4 cells, too few for the floor form
        out.append(("reported", s.reported, 0.0, "<="))
    if kind == "collinear":
        out.append(("collinear said", s.rates["collinear said"], 0.99, ">="))
    # flags come from exact 5 % tests (5 % in expectation): two Monte-Carlo errors allowed
    return [(w, v, g, d, mc_error(v, s.n_ok if w.startswith("coverage") else s.reps)
             * (2 if w.endswith("flag") and d == "<=" else 1)) for w, v, g, d in out]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SETTINGS))
def test_full_calibration_meets_targets(name):
    for what, value, goal, direction, mc in _goal(name):
        ok = value >= goal - mc if direction == ">=" else value <= goal + mc
        assert ok, f"{name}: {what} {value:.3f} misses {direction} {goal} (MC error {mc:.3f})"
