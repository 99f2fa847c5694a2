"""Planted-law calibration: interval coverage, false exponents on flat data, false floors
on floor-less data. A fast subset runs in CI; the full table (200 repetitions per setting)
is marked slow (also: benchmarks/fit_calibration.py)."""

from __future__ import annotations

import pytest

from mlip_scaling.scaling.fit_calibration import SETTINGS, run_setting


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


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SETTINGS))
def test_full_calibration_meets_targets(name):
    s = run_setting(name, 200, seed=11)
    if s.false_exponent is not None:
        assert s.false_exponent <= 0.05
    elif s.false_floor is not None:
        assert s.false_floor <= 0.10
    else:
        assert s.reported >= 0.9 and min(s.coverage.values()) >= 0.93
