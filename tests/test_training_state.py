"""Run-state pieces: RNG capture, weights-only last.pt, normalisation, precision choice."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from test_training_helpers import make_trainer, prepared

from mlip_scaling import keys
from mlip_scaling.errors import ConfigError
from mlip_scaling.training.normalization import (
    composition_matrix,
    energy_scale,
    fit_reference_energies,
)
from mlip_scaling.training.precision import resolve_amp
from mlip_scaling.training.state import capture_rng, load_state, restore_rng, save_state


def _draws():
    return (random.random(), np.random.random(), torch.rand(2).tolist())  # noqa: NPY002


def test_rng_states_round_trip_through_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    save_state({"rng": capture_rng()}, tmp_path / "last.pt")
    expected = _draws()
    _draws()
    restore_rng(load_state(tmp_path / "last.pt")["rng"])
    assert _draws() == expected


def test_load_state_rejects_foreign_files(tmp_path):
    torch.save({"format": "something-else"}, tmp_path / "x.pt")
    with pytest.raises(ConfigError, match="not a training state"):
        load_state(tmp_path / "x.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="cannot resume"):
        load_state(tmp_path / "bad.pt")


def test_reference_energies_recover_per_element_constants():
    items = prepared(12, seed=5)
    species = [13, 29]
    counts = composition_matrix(items, species)
    np.testing.assert_allclose(counts.sum(axis=1), [4.0] * 12, rtol=1e-12)
    true = {13: -3.1, 29: -1.7}
    for d, row in zip(items, counts):  # energies exactly linear in composition
        d[keys.ENERGY] = torch.tensor([row @ np.array([true[13], true[29]])])
    refs = fit_reference_energies(items, species)
    assert refs[13] == pytest.approx(-3.1, abs=1e-5) and refs[29] == pytest.approx(-1.7, abs=1e-5)


def test_energy_scale_is_rms_force():
    items = prepared(6, seed=6)
    forces = torch.cat([d[keys.FORCES] for d in items])
    refs = fit_reference_energies(items, [13, 29])
    assert energy_scale(items, refs) == pytest.approx(float(forces.pow(2).mean().sqrt()), rel=1e-5)
    for d in items:
        del d[keys.FORCES]
    assert energy_scale(items, refs) > 0


def test_amp_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_amp("off", cpu) == "off"
    assert resolve_amp("bf16", cpu) == "bf16"
    assert resolve_amp("auto", cpu) in ("bf16", "off")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        resolve_amp("fp16", cpu)


def test_bf16_autocast_trains_with_float32_forces_and_loss(tmp_path):
    items = prepared(10, seed=8)
    trainer = make_trainer(tmp_path, items[:8], items[8:], amp="bf16", max_steps=2, epochs=5)
    trainer.prepare(resume=False)
    loss, _, pred = trainer._loss(trainer._batch([0, 1]), trainer.potential)
    assert loss.dtype == torch.float32 and pred[keys.FORCES].dtype == torch.float32
    trainer.fit()
    assert np.isfinite(trainer.last_val["loss"]) and trainer.skipped == 0


def test_non_finite_loss_skips_the_step_and_never_reaches_a_checkpoint(tmp_path):
    items = prepared(10, seed=9)
    trainer = make_trainer(tmp_path, items[:8], items[8:], max_steps=4, epochs=5, batch_size=8)
    items[3][keys.ENERGY] = torch.tensor([float("nan")])  # poisons every batch holding it
    trainer.prepare(resume=False)
    before = {k: v.clone() for k, v in trainer.potential.state_dict().items()}
    trainer.fit()
    assert trainer.skipped == 4 and trainer.step == 4
    state = load_state(tmp_path / "last.pt")
    for name, value in state["potential"].items():
        torch.testing.assert_close(value, before[name], rtol=1e-6, atol=1e-7, msg=name)
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(e["kind"] == "skipped_step" for e in events) == 4


def test_worker_processes_give_the_same_training(tmp_path):
    items = prepared(10, seed=10)
    runs = []
    for workers in (0, 1):
        trainer = make_trainer(tmp_path / str(workers), items[:8], items[8:], max_steps=3,
                               epochs=5, workers=workers, save_every=100)
        trainer.prepare(resume=False)
        trainer.fit()
        runs.append(trainer.potential.state_dict())
    for name, value in runs[0].items():
        torch.testing.assert_close(value, runs[1][name], rtol=1e-6, atol=1e-7, msg=name)
