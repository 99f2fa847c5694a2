"""Standard errors of the test-split metrics: hand-computed values, calibration against the
spread of repeated test sets, and their effect on the fits (weighted with, unweighted without).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_evaluate import _structures
from test_report import synthetic_records

from mlip_scaling import keys
from mlip_scaling.accuracy import (
    LossWeights,
    error_sums,
    finish_metrics,
    loss_from_sums,
    standard_errors,
    structure_errors,
)
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model, get_preset
from mlip_scaling.scaling.metrics import REGISTRY, produced_by, test_metrics
from mlip_scaling.scaling.report import fit_records, load_records, split_records


def _hand_batch() -> tuple[dict, dict]:
    """Three structures of 1, 2 and 1 atoms; |ΔE|/N = 0.1, 0.2, 0.6; force errors
    (0.3, 0, 0) | (0.6, 0, 0), (0, 0, 0) | (0, 0.9, 0); no stress label."""
    f64 = torch.float64
    batch = {keys.NUM_ATOMS: torch.tensor([1, 2, 1]), keys.ENERGY: torch.zeros(3, dtype=f64),
             keys.FORCES: torch.zeros(4, 3, dtype=f64)}
    pred = {keys.ENERGY: torch.tensor([0.1, -0.4, 0.6], dtype=f64),
            keys.FORCES: torch.tensor([[0.3, 0, 0], [0.6, 0, 0], [0, 0, 0], [0, 0.9, 0]],
                                      dtype=f64)}
    return pred, batch


def test_standard_errors_equal_hand_computed_values() -> None:
    pred, batch = _hand_batch()
    se = standard_errors(structure_errors(pred, batch), LossWeights())
    # energy: per-structure errors 0.1, 0.2, 0.6 -> std (ddof 1) / sqrt(3)
    assert se["energy_mae_se"] == pytest.approx(math.sqrt(0.14 / 2 / 3), rel=1e-12)
    # force MAE = 1.8 / 12 components; structures (Σ|ΔF|, components) = (0.3, 3), (0.6, 6),
    # (0.9, 3): d_i = (a_i - 0.15 c_i) / 12 = -0.0125, -0.025, 0.0375; SE² = 3/2 Σ d_i²
    assert se["force_mae_se"] == pytest.approx(math.sqrt(1.5 * 0.0021875), rel=1e-12)
    # loss = 2.5 E + 20 L2MAE(F): d_i = 2.5 (e_i - 0.3) / 3 + 20 (l2_i - 0.45 n_i) / 4
    d = [2.5 * -0.2 / 3 + 20 * -0.15 / 4, 2.5 * -0.1 / 3 + 20 * -0.3 / 4,
         2.5 * 0.3 / 3 + 20 * 0.45 / 4]
    assert se["test_loss_se"] == pytest.approx(math.sqrt(1.5 * sum(v * v for v in d)))
    assert se["stress_mae_se"] is None and se["stress_rmse_se"] is None  # nothing labelled


def test_structure_rows_add_up_to_the_pooled_sums_of_training() -> None:
    g = torch.Generator().manual_seed(0)
    n_atoms = torch.tensor([2, 5, 1, 3])
    batch = {keys.NUM_ATOMS: n_atoms, keys.ENERGY: torch.randn(4, generator=g),
             keys.FORCES: torch.randn(11, 3, generator=g),
             keys.STRESS: torch.randn(4, 3, 3, generator=g),
             keys.HAS_STRESS: torch.tensor([True, False, True, True]),
             keys.BATCH: torch.repeat_interleave(torch.arange(4), n_atoms)}
    pred = {k: batch[k] + 0.1 * torch.randn(batch[k].shape, generator=g)
            for k in (keys.ENERGY, keys.FORCES, keys.STRESS)}
    rows, sums = structure_errors(pred, batch), error_sums(pred, batch)
    assert set(rows) == set(sums)
    for name, total in sums.items():
        assert rows[name].sum() == pytest.approx(total, rel=1e-12), name
    assert rows["n_f"].tolist() == [6.0, 15.0, 3.0, 9.0] and rows["n_sb"][1] == 0.0


def _test_set(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-structure error rows of ``n`` structures of 1-8 atoms whose force errors share a
    per-structure scale (atoms of one structure are not independent); half carry stress."""
    sizes = rng.integers(1, 9, n)
    scale = rng.lognormal(-1.0, 0.5, n)
    batch = {keys.NUM_ATOMS: torch.as_tensor(sizes), keys.ENERGY: torch.zeros(n),
             keys.FORCES: torch.zeros(int(sizes.sum()), 3), keys.STRESS: torch.zeros(n, 3, 3),
             keys.HAS_STRESS: torch.as_tensor(rng.random(n) < 0.5)}
    pred = {keys.ENERGY: torch.as_tensor(rng.normal(0, 0.02, n) * sizes),
            keys.FORCES: torch.as_tensor(rng.normal(0, 1, (int(sizes.sum()), 3))
                                         * np.repeat(scale, sizes)[:, None]),
            keys.STRESS: torch.as_tensor(rng.normal(0, 0.01, (n, 3, 3)) * scale[:, None, None])}
    return structure_errors(pred, batch)


def test_standard_errors_match_the_spread_over_repeated_test_sets() -> None:
    """Over 400 independent 100-structure test sets, the sd of each metric agrees with its
    reported SE (root mean square over the sets; Monte-Carlo error of the ratio ~3.5 %);
    atoms counted as independent units would understate the force-MAE SE ~1.6-fold."""
    rng = np.random.default_rng(1)
    weights = LossWeights()
    names = ["energy_mae", "force_mae", "force_rmse", "stress_mae", "test_loss"]
    values, ses, naive = {k: [] for k in names}, {k: [] for k in names}, []
    for _ in range(400):
        rows = _test_set(rng, 100)
        sums = {k: float(v.sum()) for k, v in rows.items()}
        metrics = {**finish_metrics(sums), "test_loss": loss_from_sums(sums, weights)}
        se = standard_errors(rows, weights)
        for k in names:
            values[k].append(metrics[k])
            ses[k].append(se[f"{k}_se"])
        naive.append(metrics["force_rmse"] / math.sqrt(sums["n_f"]))  # ~ sd(|ΔF|)/√components
    for k in names:
        ratio = np.std(values[k], ddof=1) / np.sqrt(np.mean(np.square(ses[k])))
        assert 0.88 < ratio < 1.12, (k, ratio)
    assert np.std(values["force_mae"], ddof=1) / np.mean(naive) > 1.4


def _with_loss_se(records: list[dict]) -> list[dict]:
    out = json.loads(json.dumps(records))
    for rec in out:
        if rec["status"] == "ok" and rec["metrics"].get("test_loss") is not None:
            rec["metrics"]["test_loss_se"] = 0.01 * rec["metrics"]["test_loss"]
    return out


@pytest.mark.parametrize("recorded", [True, False])
def test_results_with_test_loss_se_give_weighted_rows_and_old_files_unweighted(
        tmp_path, recorded: bool) -> None:
    records = synthetic_records()
    path = tmp_path / "scaling_results.json"
    path.write_text(json.dumps({"format": "mlip-scaling-results/1",
                                "records": _with_loss_se(records) if recorded else records}))
    usable, _ = split_records(load_records(path))
    rows = fit_records(usable, metrics=["test_loss"], axes=["data", "params"], n_perm=10)
    power = [r for r in rows if r["form"] == "power"]
    assert len(power) == 4 and all(r["status"] == "ok" for r in power)
    for row in power:
        assert ("standard errors" in row["weighting"]) is recorded, row["weighting"]
        assert recorded or row["weighting"] == "unweighted"


def test_every_test_split_metric_has_a_registered_standard_error() -> None:
    for name in produced_by("test"):
        if not name.endswith("_se"):
            assert f"{name}_se" in produced_by("test")
            se = REGISTRY[f"{name}_se"]
            assert not se.fitted and se.unit == REGISTRY[name].unit


def test_standard_errors_do_not_depend_on_the_batch_size() -> None:
    family, config = get_preset("transformer-1.2k")
    potential = Potential(build_model(family, config), family, config, species=[29],
                          reference_energies={29: 0.0}).double().eval()
    structures = _structures(5)
    whole = test_metrics(potential, structures, range(5))
    split = test_metrics(potential, structures, range(5), batch_size=2)
    assert whole["force_mae_se"] > 0 and whole["test_loss_se"] > 0
    for name, value in whole.items():
        assert split[name] == pytest.approx(value, rel=1e-10), name


def test_an_empty_test_split_is_one_line():
    from mlip_scaling.errors import DataError
    from mlip_scaling.scaling.metrics import test_metrics

    with pytest.raises(DataError, match="test split is empty"):
        test_metrics(None, [], [])
