"""Early stopping: the rule on planted loss sequences, best-weight export, resume, CLI record."""

from __future__ import annotations

import math

import ase.io
import pytest
import torch
from test_training_helpers import emt_structures, make_trainer, prepared

from mlip_scaling.checkpoint import load_checkpoint
from mlip_scaling.errors import ConfigError
from mlip_scaling.training.cli import main
from mlip_scaling.training.early_stop import EarlyStopping

W = {"w": torch.zeros(2)}


def _feed(stopper: EarlyStopping, losses: list[float]) -> list[bool]:
    return [stopper.update(10 * (k + 1), {"loss": v}, W) for k, v in enumerate(losses)]


def test_rule_on_planted_sequences():
    stopper = EarlyStopping(patience=2, min_delta=0.1, val_every=10)
    # 0.95 and 0.92 are below 1.0 but by less than 10 %: not improvements
    assert _feed(stopper, [1.0, 0.8, 0.75, 0.5, 0.95, 0.46]) == [True, True, False, True,
                                                                 False, False]
    assert stopper.stopped and stopper.best_step == 40 and stopper.best_loss == 0.5
    assert stopper.record()["converged"] is True
    assert stopper.record()["stop_criterion"]["patience"] == 2
    running = EarlyStopping(patience=3, min_delta=0.0, val_every=0)
    _feed(running, [1.0, 0.9, math.nan, 0.8])  # NaN is never an improvement
    assert not running.stopped and running.best_step == 40 and running.since_best == 0
    off = EarlyStopping(patience=None, min_delta=0.0, val_every=0)
    _feed(off, [1.0, 2.0, 3.0, 4.0])
    assert not off.stopped and off.record()["converged"] is None and off.best_weights is None


def test_no_stop_before_the_floor():
    """The patience runs out at step 30; with a floor at 50 the stop waits for step 50."""
    losses = [1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    plain = EarlyStopping(patience=2, min_delta=0.0, val_every=10)
    floored = EarlyStopping(patience=2, min_delta=0.0, val_every=10, min_step=50)
    stops = []
    for k, loss in enumerate(losses):
        for stopper in (plain, floored):
            stopper.update(10 * (k + 1), {"loss": loss}, W)
        stops.append((plain.stopped, floored.stopped))
    assert stops == [(False, False), (False, False), (True, False), (True, False),
                     (True, True), (True, True)]
    assert floored.best_step == 10 and floored.record()["stop_criterion"]["min_steps"] == 50
    again = EarlyStopping(patience=2, min_delta=0.0, val_every=10, min_step=50)
    again.load_state_dict(floored.state_dict())
    assert again.stopped and again.last_step == 60


def test_patience_needs_a_validation_split():
    from mlip_scaling.training.config import TrainConfig

    with pytest.raises(ConfigError, match="validation split"):
        TrainConfig(patience=3, val_size=0).validate()


def _stopping_trainer(run_dir, **options):
    opts = {"epochs": 200, "patience": 2, "min_delta": 0.3, "val_every": 2, "lr": 5e-3,
            "ema_decay": 0.9, **options}
    return make_trainer(run_dir, prepared(12), prepared(4, seed=1), **opts)


def _fitted(run_dir, **options):
    """A stopping trainer trained from scratch."""
    trainer = _stopping_trainer(run_dir, **options)
    trainer.prepare(resume=False)
    trainer.fit()
    return trainer


def test_stops_early_and_exports_best_validation_weights(tmp_path):
    torch.set_num_threads(1)
    trainer = _stopping_trainer(tmp_path / "run")
    trainer.prepare(resume=False)
    trainer.fit()
    assert trainer.early.stopped and trainer.step < trainer.scheduler.total_steps
    assert trainer.early.best_step < trainer.step
    exported, metrics = trainer.export_potential()
    assert metrics["loss"] == trainer.early.best_loss
    # the exported weights reproduce the best validation (EMA weights: they were evaluated)
    assert trainer.validate(exported)["loss"] == pytest.approx(trainer.early.best_loss,
                                                               rel=1e-6)
    assert trainer.validate()["loss"] != pytest.approx(trainer.early.best_loss, rel=1e-6)


def test_min_steps_keeps_training_until_the_floor(tmp_path):
    torch.set_num_threads(1)
    early = _fitted(tmp_path / "early")
    floored = _fitted(tmp_path / "floored", min_steps=0.5)
    total = floored.scheduler.total_steps
    assert floored.early.min_step == total // 2 and early.step < total // 2
    assert floored.early.stopped and total // 2 <= floored.step < total


class _Interrupt(Exception):
    pass


def test_resume_keeps_the_early_stopping_state(tmp_path):
    torch.set_num_threads(1)
    whole = _fitted(tmp_path / "whole")
    cut = _stopping_trainer(tmp_path / "cut", save_every=1)
    cut.prepare(resume=False)

    def stop_at(record: dict) -> None:
        if record["step"] == whole.step - 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        cut.fit(stop_at)
    again = _stopping_trainer(tmp_path / "cut", save_every=1)
    assert again.prepare(resume=True) is False
    assert again.early.validations > 0  # the state came back from last.pt
    again.fit()
    assert (again.step, again.early.best_step, again.early.since_best) == (
        whole.step, whole.early.best_step, whole.early.since_best)
    assert again.early.best_loss == pytest.approx(whole.early.best_loss, rel=1e-6)
    finished = _stopping_trainer(tmp_path / "cut", save_every=1)
    assert finished.prepare(resume=True) is True  # stopped early: nothing left to train


def test_cli_records_convergence(tmp_path, capsys):
    data = tmp_path / "emt.extxyz"
    ase.io.write(data, emt_structures(16, seed=11))
    out = tmp_path / "run"
    argv = ["--model", "transformer", "--params", "1000", "--batch-size", "4", "--val-size",
            "4", "--test-size", "4", "--train-size", "8", "--epochs", "60", "--device", "cpu",
            "--patience", "2", "--min-delta", "0.5", "--data", str(data), "--out", str(out),
            "--export", "m.pt"]
    assert main(argv) == 0
    assert "early stopping: converged" in capsys.readouterr().err
    train = load_checkpoint(out / "m.pt")["train"]
    assert train["converged"] is True and train["budget"] == "patience"
    assert train["best_step"] < train["steps"] < 60 * 2
    assert train["stop_criterion"] == {"monitor": "validation loss", "patience": 2,
                                       "min_delta": 0.5, "mode": "relative",
                                       "min_steps": 0, "val_every_steps": None}
