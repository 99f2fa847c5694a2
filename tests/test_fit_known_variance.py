"""Recorded standard errors as known variances: the within-cell check of the SEs and the
known-variance curvature test (``fit_cells``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlip_scaling.scaling.fit import fit_power
from mlip_scaling.scaling.fit_cells import (
    curvature_p,
    make_cells,
    paule_mandel,
    reweight,
    seeds_within_se,
)
from mlip_scaling.scaling.fit_planted import broken_law


def test_seeds_within_se_accepts_matching_scatter_and_rejects_larger():
    rng = np.random.default_rng(0)
    rel = np.full(60, 0.05)
    dev = rng.normal(0, 0.05, (20, 3))
    dev -= dev.mean(1, keepdims=True)  # deviations from 20 cell means, 3 seeds each
    assert seeds_within_se(dev.ravel(), rel, 20)
    assert not seeds_within_se(3 * dev.ravel(), rel, 20)  # seeds scatter 3x their SEs
    assert seeds_within_se(np.zeros(5), np.full(5, 0.05), 5)  # no replicates: nothing to check


def test_known_variance_curvature_is_the_z_test_when_residuals_fit_the_ses():
    x = np.logspace(3, 7, 5)
    u = np.log(x)
    quad = 0.01 * ((u - u.mean()) / np.ptp(u)) ** 2  # a small bend, no noise
    y = 3 * x**-0.3 * np.exp(quad)
    var = np.full(5, 0.02**2)
    design = np.stack([np.ones(5), u, u**2], axis=1)
    cov = np.linalg.inv(design.T @ design / var[0])
    coef = cov @ design.T @ (np.log(y) / var[0])
    z = abs(coef[2]) / np.sqrt(cov[2, 2])  # residuals exactly 0: s² < 1, scale 1
    assert curvature_p(x, y, np.ones(5), var) == pytest.approx(2 * stats.norm.sf(z), rel=1e-6)
    t_p = curvature_p(x, y, np.ones(5))  # no known variance: t-test, scale from residuals
    assert t_p < 1e-6  # exact quadratic: residual scale ~0


def test_known_variance_test_widens_with_residuals_beyond_the_ses():
    rng = np.random.default_rng(1)
    x = np.logspace(3, 7, 8)
    y = 3 * x**-0.3 * np.exp(rng.normal(0, 0.05, 8))
    small_se = curvature_p(x, y, np.ones(8), np.full(8, 0.005**2))  # SEs 10x too small
    # scale max(1, s²): SEs far too small give the residual scale, not a 100x smaller one
    assert small_se == pytest.approx(
        2 * stats.norm.sf(stats.t.isf(curvature_p(x, y, np.ones(8)) / 2, 5)), rel=1e-6
    )


def test_se_complete_gives_the_power_to_flag_a_break_at_five_sizes():
    rng = np.random.default_rng(2)
    x = np.logspace(3, 7, 5)
    flags = {False: 0, True: 0}
    for _ in range(40):
        y = broken_law(x, 3, 0.1, 0.4, 1e5, 0.5) * np.exp(rng.normal(0, 0.05, 5))
        for complete in flags:
            fit = fit_power(x, y, se=0.05 * y, se_complete=complete)
            flags[complete] += "curvature" in fit.flags
    assert flags[True] >= 38  # known-variance z: ~100 % at 5 sizes
    assert flags[False] < flags[True]  # t with 2 residual d.o.f.: ~85 %
    cells = make_cells(x, y, se=0.05 * y)
    assert cells.var_known == pytest.approx(np.full(5, 0.05**2))
    fit = fit_power(x, y, se=0.05 * y, se_complete=True)
    assert "known variances" in fit.weighting


def test_seeds_scattering_beyond_their_ses_keep_the_t_test():
    rng = np.random.default_rng(3)
    x = np.repeat(np.logspace(3, 7, 5), 3)
    y = 3 * x**-0.3 * np.exp(rng.normal(0, 0.05, 15))
    cells = make_cells(x, y, se=0.005 * y)  # SEs 10x smaller than the seeds' scatter
    assert cells.var_known is None
    fit = fit_power(x, y, se=0.005 * y, se_complete=True)
    assert "known variances" not in fit.weighting


def test_paule_mandel_solves_the_weighted_residual_sum_for_tau2():
    resid = np.array([0.03, -0.05, 0.02, 0.06, -0.04, 0.01])
    known = np.array([1, 2, 4, 8, 16, 32]) * 1e-4

    def rss_of(w):
        return float((w * resid**2).sum())  # a fit whose residuals do not move

    t2 = paule_mandel(rss_of, known, dof=3)
    assert t2 > 0 and rss_of(1 / (t2 + known)) == pytest.approx(3, rel=1e-6)
    assert paule_mandel(rss_of, known * 1e3, dof=3) == 0.0  # residuals within the SEs
    assert paule_mandel(rss_of, np.full(6, 1e-4), dof=3) == 0.0  # equal: weights equal anyway


def test_floor_weights_follow_the_ses_when_the_floor_law_fits():
    from mlip_scaling.scaling.fit_nonlinear import fit_floor_vp

    x = np.logspace(3, 8, 8)
    y = 0.05 + 30 * x**-0.4  # noiseless floor law: no between-cell variance about it
    se = y * 0.04 * 10 ** -np.linspace(0, 1, 8)  # SEs falling 10-fold
    cells = make_cells(x, y, se=se)
    floor = reweight(cells, lambda w: fit_floor_vp(cells.x, cells.y, False, w)["rss"], 3)
    ideal = 1 / cells.known
    np.testing.assert_allclose(floor.w, ideal / ideal.mean(), rtol=1e-9)
    # about a quadratic in log-log the floor's bend passes for τ² > 0: flatter weights
    assert cells.w.max() / cells.w.min() < 0.9 * floor.w.max() / floor.w.min()
