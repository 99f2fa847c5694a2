"""The training loss (OMat24 recipe) and the pooled error metrics."""

from __future__ import annotations

import math

import pytest
import torch

from mlip_scaling import keys
from mlip_scaling.accuracy import (
    LossWeights,
    add_sums,
    error_sums,
    finish_metrics,
    loss_from_sums,
)
from mlip_scaling.keys import HAS_STRESS
from mlip_scaling.training.loss import loss_terms, total_loss


def _batch(n_atoms=(2, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    b, n = len(n_atoms), sum(n_atoms)
    return {
        keys.NUM_ATOMS: torch.tensor(n_atoms),
        keys.ENERGY: torch.randn(b, generator=g),
        keys.FORCES: torch.randn(n, 3, generator=g),
        keys.STRESS: torch.randn(b, 3, 3, generator=g) * 0.01,
        HAS_STRESS: torch.ones(b, dtype=torch.bool),
    }


def _copy(batch):
    return {k: v.clone() for k, v in batch.items() if k in (keys.ENERGY, keys.FORCES, keys.STRESS)}


def test_perfect_prediction_has_zero_loss():
    batch = _batch()
    terms = loss_terms(_copy(batch), batch)
    assert set(terms) == {"energy", "force", "stress_iso", "stress_aniso"}
    assert float(total_loss(terms, LossWeights())) == pytest.approx(0.0, abs=1e-12)


def test_energy_term_is_per_atom_mae():
    batch = _batch((2, 4))
    pred = _copy(batch)
    pred[keys.ENERGY] = batch[keys.ENERGY] + torch.tensor([0.2, -0.8])  # 0.1 and 0.2 eV/atom
    assert float(loss_terms(pred, batch)["energy"]) == pytest.approx(0.15)


def test_force_term_is_l2mae_over_atoms():
    batch = _batch((2,))
    pred = _copy(batch)
    pred[keys.FORCES][0] += torch.tensor([3.0, 4.0, 0.0])  # |ΔF| = 5 on one of 2 atoms
    assert float(loss_terms(pred, batch)["force"]) == pytest.approx(2.5)


def test_stress_split_into_isotropic_and_deviatoric():
    batch = _batch((2, 2))
    pressure = _copy(batch)
    pressure[keys.STRESS] = batch[keys.STRESS] + 0.3 * torch.eye(3)
    terms = loss_terms(pressure, batch)
    assert float(terms["stress_iso"]) == pytest.approx(0.3)
    assert float(terms["stress_aniso"]) == pytest.approx(0.0, abs=1e-7)
    shear = _copy(batch)
    shear[keys.STRESS] = batch[keys.STRESS] + torch.diag(torch.tensor([0.9, -0.9, 0.0]))
    terms = loss_terms(shear, batch)
    assert float(terms["stress_iso"]) == pytest.approx(0.0, abs=1e-7)
    assert float(terms["stress_aniso"]) == pytest.approx(1.8 / 9)


def test_stress_terms_only_over_labelled_structures():
    batch = _batch((2, 2))
    batch[HAS_STRESS] = torch.tensor([True, False])
    pred = _copy(batch)
    pred[keys.STRESS][1] += 5.0  # unlabelled structure: ignored
    pred[keys.STRESS][0] += 0.1 * torch.eye(3)
    assert float(loss_terms(pred, batch)["stress_iso"]) == pytest.approx(0.1)
    batch[HAS_STRESS] = torch.tensor([False, False])
    assert "stress_iso" not in loss_terms(pred, batch)


def test_weights_default_to_omat24_recipe():
    w = LossWeights()
    assert (w.energy, w.force, w.stress) == (2.5, 20.0, 5.0)
    terms = {k: torch.tensor(1.0) for k in ("energy", "force", "stress_iso", "stress_aniso")}
    assert float(total_loss(terms, w)) == pytest.approx(2.5 + 20 + 5 + 5)


def test_loss_is_float32_under_half_precision_predictions():
    batch = _batch()
    pred = {k: v.to(torch.bfloat16) for k, v in _copy(batch).items()}
    loss = total_loss(loss_terms(pred, batch), LossWeights())
    assert loss.dtype == torch.float32


def test_force_term_is_rotation_invariant():
    batch = _batch((3, 2), seed=1)
    pred = _copy(batch)
    pred[keys.FORCES] = pred[keys.FORCES] + torch.randn(5, 3, generator=torch.Generator()
                                                        .manual_seed(2))
    rot, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)))
    before = loss_terms(pred, batch)["force"]
    pred[keys.FORCES] = pred[keys.FORCES] @ rot.T
    batch[keys.FORCES] = batch[keys.FORCES] @ rot.T
    assert float(loss_terms(pred, batch)["force"]) == pytest.approx(float(before), rel=1e-5)


def test_pooled_metrics_equal_whole_set_metrics():
    a, b = _batch((2, 3), seed=4), _batch((4,), seed=5)
    pa, pb = _copy(a), _copy(b)
    for p in (pa, pb):
        p[keys.ENERGY] += 0.5
        p[keys.FORCES] -= 0.1
        p[keys.STRESS] += 0.01
    sums = add_sums(error_sums(pa, a), error_sums(pb, b))
    m = finish_metrics(sums)
    e_err = torch.cat([0.5 / a[keys.NUM_ATOMS].double(), 0.5 / b[keys.NUM_ATOMS].double()])
    assert m["energy_mae"] == pytest.approx(float(e_err.mean()))
    assert m["energy_rmse"] == pytest.approx(math.sqrt(float((e_err ** 2).mean())))
    assert m["force_mae"] == pytest.approx(0.1)
    assert m["stress_rmse"] == pytest.approx(0.01)
    single = loss_from_sums(error_sums(pa, a), LossWeights())
    assert single == pytest.approx(float(total_loss(loss_terms(pa, a), LossWeights())), rel=1e-5)


def test_metrics_without_forces_are_none():
    batch = _batch()
    pred = {keys.ENERGY: batch[keys.ENERGY]}
    m = finish_metrics(error_sums(pred, batch))
    assert m["energy_mae"] == 0.0 and m["force_mae"] is None and m["stress_mae"] is None


def test_unlabelled_stress_counts_nothing_even_when_its_prediction_is_not_finite():
    batch = _batch((2, 3, 4), seed=6)
    batch[HAS_STRESS] = torch.tensor([True, False, True])
    pred = _copy(batch)
    pred[keys.STRESS] = pred[keys.STRESS] + 0.02
    pred[keys.STRESS][1] = float("nan")  # the structure without a stress label
    m = finish_metrics(error_sums(pred, batch))
    assert m["stress_mae"] == pytest.approx(0.02)
    assert error_sums(pred, batch)["n_sb"] == 2.0
    batch[HAS_STRESS][:] = False
    nothing = error_sums(pred, batch)
    assert finish_metrics(nothing)["stress_mae"] is None
    assert loss_from_sums(nothing, LossWeights()) == pytest.approx(
        loss_from_sums({k: v for k, v in nothing.items() if not k.startswith(("n_s", "s_"))},
                       LossWeights()))
