"""FLOP accounting: the per-step model predicts counted FLOPs; totals integrate real steps."""

from __future__ import annotations

import pytest
import torch
from test_training_helpers import make_trainer, prepared
from torch.utils.flop_counter import FlopCounterMode

from mlip_scaling.data.atomic_data import collate
from mlip_scaling.training.flops import (
    PF_DAY,
    FlopCounter,
    FlopModel,
    batch_features,
    count_flop_kinds,
    count_flops,
    pf_days,
)


@pytest.fixture(scope="module")
def items():
    return prepared(24, seed=3)


def test_flop_model_predicts_held_out_batch(tmp_path, items):
    trainer = make_trainer(tmp_path, items[:16], items[16:18], batch_size=8)
    trainer.prepare(resume=False)  # fits the model on sample batches of sizes 1..8
    held_out = collate(items[18:24])  # 6 structures: a size not among the samples
    counted = count_flops(trainer._flop_probe, held_out)
    trainer.optimizer.zero_grad(set_to_none=True)
    predicted = trainer.flop_model.predict(batch_features(held_out))
    assert counted > 0
    assert predicted == pytest.approx(counted, rel=0.05)


def test_training_step_counts_all_three_passes(tmp_path, items):
    trainer = make_trainer(tmp_path, items[:8], items[8:10])
    batch = collate(items[:4])
    with torch.no_grad():
        forward = count_flops(lambda b: trainer.potential(b, compute_forces=False,
                                                          compute_stress=False), batch)
    step = count_flops(trainer._flop_probe, batch)
    # forward + force/stress backward (create_graph) + parameter backward through both
    assert step > 3 * forward > 0


def test_total_flops_scale_with_steps(tmp_path, items):
    totals = {}
    for steps in (3, 6):
        trainer = make_trainer(tmp_path / str(steps), items[:8], items[8:10], max_steps=steps,
                               epochs=100, batch_size=4, save_every=100)
        trainer.prepare(resume=False)
        trainer.fit()
        totals[steps] = trainer.flops
        # all batches here have 4 structures of 4 atoms; edges vary slightly
        assert trainer.flops == pytest.approx(steps * trainer.mean_step_flops(), rel=0.05)
    assert totals[6] == pytest.approx(2 * totals[3], rel=0.05)


def test_fit_recovers_a_linear_law_and_pf_days():
    feats = [torch.tensor(f, dtype=torch.float64).numpy() for f in
             ([10, 100, 50], [20, 230, 100], [40, 410, 400], [80, 900, 800], [7, 60, 49])]
    flops = [1000 + 30 * a + 5 * e + 2 * p for a, e, p in feats]
    model = FlopModel.fit(feats, flops)
    assert model.predict(feats[2]) == pytest.approx(flops[2], rel=1e-6)
    assert FlopModel.from_state(model.state_dict()).predict(feats[0]) == pytest.approx(flops[0])
    assert pf_days(PF_DAY * 3) == pytest.approx(3.0)


def test_max_flops_budget_stops_training(tmp_path, items):
    probe = make_trainer(tmp_path / "probe", items[:8], items[8:10], batch_size=4)
    probe.prepare(resume=False)
    budget = 2.5 * probe.mean_step_flops()
    trainer = make_trainer(tmp_path / "run", items[:8], items[8:10], batch_size=4, epochs=100,
                           max_flops=budget, save_every=100)
    trainer.prepare(resume=False)
    assert trainer.scheduler.total_steps == 3  # the schedule is planned for the budget
    trainer.fit()
    assert trainer.step == 3 and trainer.flops >= budget


def test_flop_counter_counts_pointwise_reductions_scatters_and_matmuls():
    x, w = torch.randn(10, 20), torch.randn(20, 5)
    with FlopCounterMode(display=False) as reference, FlopCounter() as counter:
        y = torch.exp(x * 2.0 + 1.0)  # 3 pointwise ops x 200 elements
        total = y.sum()  # a reduction over 200 elements
        z = x @ w  # matmul: the matmul count only
        out = torch.zeros(3, 5).index_add_(0, torch.tensor([0, 1, 1, 2] * 2 + [0, 2]), z)
        view = x.view(20, 10)[:5]  # data movement: 0
    assert counter.flops == 3 * 200 + 200 + z.numel()
    assert counter.matmul == reference.get_total_flops() == 2 * 10 * 20 * 5
    assert count_flop_kinds(lambda _: x @ w + 1.0, None) == (2000, 2050)
    del total, out, view


def test_matmul_count_is_flop_counter_modes_on_a_training_step(tmp_path, items):
    trainer = make_trainer(tmp_path, items[:8], items[8:10])
    batch = collate(items[:4])
    with FlopCounterMode(display=False) as reference:
        trainer._flop_probe(batch)
    assert count_flop_kinds(trainer._flop_probe, batch)[0] == reference.get_total_flops() > 0


def test_training_records_total_and_matmul_flops(tmp_path, items):
    trainer = make_trainer(tmp_path, items[:8], items[8:10], max_steps=3, epochs=100,
                           batch_size=4, save_every=100)
    trainer.prepare(resume=False)
    batch = collate(items[:4])
    matmul_only, total = count_flop_kinds(trainer._flop_probe, batch)
    trainer.optimizer.zero_grad(set_to_none=True)
    assert total > matmul_only > 0  # elementwise work is counted on top of the matmuls
    feats = batch_features(batch)
    assert trainer.flop_model.predict(feats) == pytest.approx(total, rel=0.05)
    assert trainer.flop_model_matmul.predict(feats) == pytest.approx(matmul_only, rel=0.05)
    trainer.fit()
    assert trainer.flops > trainer.flops_matmul > 0
    assert trainer.flops / trainer.flops_matmul == pytest.approx(total / matmul_only, rel=0.05)
