"""``--amp`` auto on a CPU: the faster of bf16 autocast and float32, timed, and said in the log."""

from __future__ import annotations

import json
import time

import pytest
import torch
from test_training_helpers import emt_structures

from mlip_scaling.training import precision
from mlip_scaling.training import trainer as trainer_module
from mlip_scaling.training.config import TrainConfig
from mlip_scaling.training.precision import choose_cpu_precision, time_precisions
from mlip_scaling.training.runner import run_training


def _fake_steps(cost: dict[str, list[float]]):
    now, calls = [0.0], []

    def step(precision: str) -> None:
        calls.append(precision)
        now[0] += cost[precision].pop(0)

    return step, calls, (lambda: now[0])


def test_time_precisions_interleaves_after_warm_up_and_keeps_the_best():
    step, calls, clock = _fake_steps({"off": [0.5, 0.2, 0.3, 0.25], "bf16": [0.9, 0.4, 0.35, 0.5]})
    best = time_precisions(step, repeats=3, clock=clock)  # the first call of each: warm-up
    assert calls == ["off", "bf16"] * 4
    assert best == pytest.approx({"off": 0.2, "bf16": 0.35}, rel=1e-12)


def test_time_precisions_stops_at_its_budget():
    step, calls, clock = _fake_steps({"off": [9.0, 8.0, 8.0], "bf16": [9.0, 7.0, 7.0]})
    best = time_precisions(step, repeats=3, budget_s=10.0, clock=clock)
    assert calls == ["off", "bf16"] * 2  # warm-up + one timed round of 15 s > 10 s
    assert best == pytest.approx({"off": 8.0, "bf16": 7.0}, rel=1e-12)


@pytest.mark.parametrize(("seconds", "chosen", "text"), [
    ({"off": 0.192, "bf16": 0.250}, "off", "faster here: 192 ms/step vs bf16 autocast 250"),
    ({"off": 0.300, "bf16": 0.100}, "bf16", "faster here: 100 ms/step vs float32 300"),
    ({"off": 0.100, "bf16": 0.097}, "off", "100 ms/step vs bf16 autocast 97"),
    ({"off": 0.100, "bf16": 0.094}, "bf16", "faster here: 94 ms/step vs float32 100"),
])
def test_choose_cpu_precision_takes_bf16_only_when_clearly_faster(seconds, chosen, text):
    precision, reason = choose_cpu_precision(seconds)
    assert precision == chosen and text in reason and "\n" not in reason


def _train(tmp_path, resume: bool = False) -> tuple[dict, str]:
    cfg = TrainConfig(model="transformer-1.2k", amp="auto", device="cpu", batch_size=4,
                      val_size=4, test_size=4, epochs=1, max_steps=2, threads=1,
                      out=str(tmp_path / "run"), resume=resume).validate()
    result = run_training(cfg, source=emt_structures(16, seed=21), source_path=None)
    return result["train"], str(tmp_path / "run" / "metrics.jsonl")


def _fake_timing(monkeypatch, seconds: dict[str, float], calls: list) -> None:
    """Real timed steps (so the probe runs) but fixed results (so the choice is known)."""
    real = trainer_module.time_precisions

    def timed(step, *args, **kwargs):
        calls.append(real(step, *args, **kwargs))
        return dict(seconds)

    monkeypatch.setattr(trainer_module, "time_precisions", timed)
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: True)


def _amp_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("--amp auto:")]


def test_auto_on_a_cpu_with_bf16_times_both_logs_the_choice_and_keeps_it(
        tmp_path, monkeypatch, capsys):
    calls: list = []
    _fake_timing(monkeypatch, {"off": 0.3, "bf16": 0.1}, calls)
    train, metrics = _train(tmp_path)
    [line] = _amp_lines(capsys.readouterr().err)
    assert line == ("--amp auto: bf16 autocast (faster here: 100 ms/step vs float32 300 ms/step,"
                    " best of timed training steps)")
    assert len(calls) == 1 and set(calls[0]) == {"off", "bf16"}
    assert all(0 < s < 60 for s in calls[0].values())  # real steps were timed
    assert train["amp"] == "bf16"
    events = [json.loads(x) for x in open(metrics).read().splitlines()]
    assert [e["precision"] for e in events if e["kind"] == "amp"] == ["bf16"]
    # a resume keeps the choice the run started with, without timing again
    _fake_timing(monkeypatch, {"off": 0.1, "bf16": 0.3}, calls)
    train, _ = _train(tmp_path, resume=True)
    [line] = _amp_lines(capsys.readouterr().err)
    assert line == "--amp auto: bf16 autocast (chosen at the start)"
    assert len(calls) == 1 and train["amp"] == "bf16"


def test_auto_on_a_cpu_without_bf16_is_float32_without_timing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(trainer_module, "time_precisions", pytest.fail)
    train, _ = _train(tmp_path)
    [line] = _amp_lines(capsys.readouterr().err)
    assert line.startswith("--amp auto: float32 (the CPU has no native bf16")
    assert train["amp"] == "off"


def test_probe_leaves_the_weights_and_gradients_untouched(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: True)
    seen = {}
    real = trainer_module.Trainer._choose_amp

    def spy(self):
        before = {k: v.clone() for k, v in self.potential.state_dict().items()}
        real(self)
        seen["grads"] = [p.grad for p in self.potential.parameters()]
        for name, value in self.potential.state_dict().items():
            torch.testing.assert_close(value, before[name], rtol=1e-6, atol=1e-7, msg=name)
        seen["ok"] = True

    monkeypatch.setattr(trainer_module.Trainer, "_choose_amp", spy)
    _train(tmp_path)
    assert seen["ok"] and all(g is None for g in seen["grads"])


def test_probe_clock_is_cpu_time_on_one_thread():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert precision.probe_clock() is time.process_time  # other processes do not count
        torch.set_num_threads(2)
        assert precision.probe_clock() is time.perf_counter  # CPU time would add up threads
    finally:
        torch.set_num_threads(threads)
