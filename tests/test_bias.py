"""Bias/expressivity identities: conservation of bias, E[H(P_F)] <= H(P̄), trade-off and
famine bounds, and the behaviour of biased vs unbiased replicate ensembles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mlip_scaling.scaling.bias import (
    SPAN_TAUS,
    bias_expressivity,
    bias_of,
    compare_bias_expressivity,
    entropy_bits,
    famine_bound,
    outcome_histograms,
    read_predictions,
    tradeoff_bound,
)


def test_entropy_of_uniform_and_point_mass():
    assert entropy_bits(np.ones(8)) == pytest.approx(3.0)
    assert entropy_bits(np.array([0, 1.0, 0])) == pytest.approx(0.0, abs=1e-12)
    # Miller-Madow adds (m - 1) / (2 n ln 2) bits
    assert entropy_bits(np.ones(4), n_samples=10) == pytest.approx(2 + 3 / (20 * np.log(2)))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_bias_summed_over_all_k_hot_targets_is_zero(k):
    rng = np.random.default_rng(k)
    n_omega = 6
    pbar = rng.dirichlet(np.ones(n_omega))
    total = 0.0
    for chosen in itertools.combinations(range(n_omega), k):
        target = np.zeros(n_omega, dtype=bool)
        target[list(chosen)] = True
        total += bias_of(pbar, target)
    assert total == pytest.approx(0.0, abs=1e-12)


def test_tradeoff_bound_holds_for_random_distributions_and_targets():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_omega = int(rng.integers(2, 12))
        pbar = rng.dirichlet(rng.uniform(0.05, 3.0, n_omega))
        target = rng.random(n_omega) < 0.4
        if not target.any():
            target[0] = True
        assert entropy_bits(pbar) <= tradeoff_bound(n_omega, bias_of(pbar, target)) + 1e-12


def test_expected_entropy_below_entropy_of_mean_and_bounds_hold():
    rng = np.random.default_rng(1)
    labels = rng.normal(size=20)
    # 8 replicates x 30 stochastic draws: each replicate has its own offset (resource effect)
    preds = (labels[None, None] + rng.normal(0, 0.05, (8, 1, 20))
             + rng.normal(0, 0.02, (8, 30, 20)))
    out = bias_expressivity(preds, labels, tau=0.03, n_bins=24)
    assert out["expected_entropy_plugin_bits"] <= out["entropy_plugin_bits"]
    # the jackknife and Miller-Madow corrections add to the plug-in estimates
    assert out["entropy_bits"] > out["entropy_plugin_bits"]
    assert out["entropy_mm_bits"] > out["entropy_plugin_bits"]
    assert out["expected_entropy_bits"] > out["expected_entropy_plugin_bits"]
    assert out["capacity_plugin_bits"] >= 0
    assert out["bound_slack_bits"] >= 0
    assert out["success_rate"] <= out["famine_bound"] + 1e-12
    assert out["draws"] == 30 and out["replicates"] == 8 and out["probes"] == 20
    lo, hi = out["ci"]["bias"]
    assert lo <= out["bias"] <= hi


def test_famine_bound_holds_per_probe_for_the_empirical_distribution():
    rng = np.random.default_rng(2)
    edges = np.linspace(-1, 1, 11)
    target = np.abs(0.5 * (edges[1:] + edges[:-1])) <= 0.25
    p_f = outcome_histograms(rng.normal(0, 0.4, (12, 5, 7)), edges)  # [R, P, Ω]
    assert p_f.shape == (12, 7, 10)
    np.testing.assert_allclose(p_f.sum(-1), 1.0)
    bias = bias_of(p_f.mean(0), target)
    for q in (0.2, 0.5, 0.9):
        rate = (p_f[..., target].sum(-1) >= q).mean(0)
        assert np.all(rate <= famine_bound(int(target.sum()), 10, bias, q) + 1e-12)


def test_accurate_ensemble_is_favourably_biased_and_inaccurate_one_is_not():
    rng = np.random.default_rng(3)
    labels = rng.normal(size=50)
    good = labels + rng.normal(0, 0.01, (10, 50))
    bad = labels + rng.normal(0.5, 0.3, (10, 50))
    g = bias_expressivity(good, labels, tau=0.05, span=2.0, n_bins=40)
    b = bias_expressivity(bad, labels, tau=0.05, span=2.0, n_bins=40)
    assert g["bias"] > 0.8 and b["bias"] < 0.1
    assert g["entropy_plugin_bits"] < b["entropy_plugin_bits"]
    # point predictions: P_F is a point mass
    assert g["expected_entropy_bits"] == pytest.approx(0.0, abs=1e-12)
    assert g["capacity_bits"] == pytest.approx(g["entropy_bits"])


@pytest.mark.parametrize("preds, labels, kw, match", [
    (np.zeros((2, 4)), np.zeros(4), {}, "replicates"),
    (np.zeros((3, 4)), np.zeros(5), {}, "do not match"),
    (np.full((3, 4), np.nan), np.zeros(4), {}, "NaN"),
    (np.zeros((3, 4)), np.zeros(4), {"tau": 1e-4, "span": 1.0, "n_bins": 4}, "no bin centre"),
])
def test_bad_input_is_refused(preds, labels, kw, match):
    with pytest.raises(ValueError, match=match):
        bias_expressivity(preds, labels, **{"tau": 0.1, **kw})


def _planted(n_rep: int, n_probes: int, seed: int, sigma: float = 0.03):
    rng = np.random.default_rng(seed)
    labels = rng.normal(size=n_probes)
    return labels + rng.normal(0.0, sigma, (n_rep, n_probes)), labels


def _true_entropy(sigma: float, tau: float, n_bins: int) -> float:
    from scipy.stats import norm

    edges = np.linspace(-SPAN_TAUS * tau, SPAN_TAUS * tau, n_bins + 1)
    cdf = norm.cdf(edges, scale=sigma)
    p = np.diff(cdf)
    p[0] += cdf[0]
    p[-1] += 1 - cdf[-1]
    return entropy_bits(p)


@pytest.mark.parametrize("n_rep, tolerance", [(5, 1.5), (20, 0.4), (100, 0.1)])
def test_expressivity_against_planted_truth(n_rep, tolerance):
    """Jackknife-corrected H(P̄) vs the true entropy of the planted error distribution
    (4.63 bits): much closer than the plug-in, and its interval contains the estimate."""
    preds, labels = _planted(n_rep, 40, seed=n_rep)
    out = bias_expressivity(preds, labels, tau=0.01)
    truth = _true_entropy(0.03, 0.01, 64)
    assert abs(out["entropy_bits"] - truth) < tolerance
    assert abs(out["entropy_bits"] - truth) < abs(out["entropy_plugin_bits"] - truth)
    for key, (lo, hi) in out["ci"].items():
        assert lo <= out[key] <= hi, key


def test_grid_is_fixed_so_an_outlier_does_not_move_it():
    preds, labels = _planted(20, 40, seed=1)
    base = bias_expressivity(preds, labels, tau=0.01)
    preds[3, 7] += 50.0  # one wild prediction
    moved = bias_expressivity(preds, labels, tau=0.01)
    assert moved["span"] == base["span"] == pytest.approx(SPAN_TAUS * 0.01)
    assert moved["entropy_plugin_bits"] == pytest.approx(base["entropy_plugin_bits"], abs=0.01)
    assert moved["clipped_fraction"] > base["clipped_fraction"]


def test_compared_models_need_the_same_replicate_count():
    a, b = _planted(8, 10, seed=2), _planted(8, 10, seed=3)
    assert len(compare_bias_expressivity([a, b], tau=0.01)) == 2
    with pytest.raises(ValueError, match="same replicate count"):
        compare_bias_expressivity([a, _planted(12, 10, seed=4)], tau=0.01)


def test_read_predictions_of_a_file_or_a_missing_path(tmp_path):
    from mlip_scaling.errors import DataError

    preds, labels = np.arange(6.0).reshape(2, 3), np.zeros(3)
    np.savez(tmp_path / "p.npz", predictions=preds, labels=labels)
    got = read_predictions(tmp_path / "p.npz")
    np.testing.assert_allclose(got[0], preds, rtol=1e-15)
    np.testing.assert_allclose(got[1], labels, rtol=1e-15)
    with pytest.raises(DataError, match="absent: no such file or directory"):
        read_predictions(tmp_path / "absent")
