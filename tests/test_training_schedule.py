"""Learning-rate schedule (linear warm-up + cosine) and EMA."""

from __future__ import annotations

import pytest
import torch

from mlip_scaling.training.ema import EMA
from mlip_scaling.training.schedule import CosineWarmup, lr_factor, warmup_steps


def test_warmup_is_linear_then_cosine_to_floor():
    total, warm, floor = 100, 10, 0.01
    f = [lr_factor(s, total, warm, floor) for s in range(total + 5)]
    assert f[0] == pytest.approx(0.1) and f[4] == pytest.approx(0.5)
    assert f[warm] == pytest.approx(1.0)
    assert f[warm + 45] == pytest.approx((1 + floor) / 2)  # half way through the decay
    assert f[total] == pytest.approx(floor) and f[total + 4] == pytest.approx(floor)
    decay = f[warm:total + 1]
    assert all(b <= a + 1e-12 for a, b in zip(decay, decay[1:]))


def test_no_warmup_starts_at_max():
    assert lr_factor(0, 50, 0, 0.0) == pytest.approx(1.0)
    assert lr_factor(50, 50, 0, 0.0) == pytest.approx(0.0)


def test_warmup_fraction_or_count():
    assert warmup_steps(0.01, 1000) == 10
    assert warmup_steps(25, 1000) == 25
    assert warmup_steps(0.0, 1000) == 0


def test_scheduler_sets_optimizer_lr_and_resumes():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = CosineWarmup(opt, 1e-3, total_steps=20, warmup=4, min_factor=0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    for _ in range(7):
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.AdamW([p], lr=1.0)
    resumed = CosineWarmup(opt2, 1e-3, total_steps=20, warmup=4, min_factor=0.1)
    resumed.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == pytest.approx(
        1e-3 * lr_factor(7, 20, 4, 0.1))


def test_ema_tracks_weights_with_ramped_decay():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # decay_1 = min(0.9, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.shadow["weight"], d * start + (1 - d) * model.weight)
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.shadow["weight"], model.weight, atol=1e-6)
    copy = torch.nn.Linear(2, 1)
    ema.copy_to(copy)
    torch.testing.assert_close(copy.weight, ema.shadow["weight"], rtol=1e-6, atol=1e-7)
    other = EMA(torch.nn.Linear(2, 1), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 201
    torch.testing.assert_close(other.shadow["bias"], ema.shadow["bias"], rtol=1e-6, atol=1e-7)
