"""Run folders: no mixed logs, stale temp files removed, resume on other data refused, locks."""

from __future__ import annotations

from pathlib import Path

import ase.io
import pytest
import torch
from test_training_cli import TINY, _error
from test_training_helpers import emt_structures

from mlip_scaling.io_utils import exclusive_lock, file_hash
from mlip_scaling.training.cli import main
from mlip_scaling.training.runner import LOCK_NAME


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    paths = folder / "a.extxyz", folder / "b.extxyz"
    for seed, path in enumerate(paths):
        ase.io.write(path, emt_structures(16, seed=20 + seed))
    return paths


def test_fresh_run_refuses_a_folder_with_a_metrics_log(tmp_path, two_datasets, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    err = _error(capsys, [*TINY, "--data", str(two_datasets[0]), "--out", str(out)])
    assert "metrics.jsonl exists" in err and "--resume" in err
    assert (out / "metrics.jsonl").read_text() == '{"kind": "train", "step": 1}\n'
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]


def test_resume_without_state_starts_clean_and_removes_stale_temps(tmp_path, two_datasets,
                                                                   capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"kind": "train", "step": 99, "old": true}\n')
    stale = [out / ".last.pt.k1l2ed.tmp", out / ".m.pt.x9y8z7.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (out / "notes.tmp").write_text("not ours")
    assert main([*TINY, "--data", str(two_datasets[0]), "--out", str(out), "--export", "m.pt",
                 "--resume"]) == 0
    err = capsys.readouterr().err
    assert "removed 2 temporary file(s)" in err and "starting fresh" in err
    assert not any(p.exists() for p in stale) and (out / "notes.tmp").exists()
    log = (out / "metrics.jsonl").read_text()
    assert '"old"' not in log and '"kind": "val"' in log
    assert not list(out.glob(".*.tmp"))


def test_resume_on_other_data_names_both_hashes(tmp_path, two_datasets, capsys):
    a, b = two_datasets
    out = tmp_path / "run"
    args = [*TINY, "--out", str(out), "--export", "m.pt", "--resume"]
    assert main([*args, "--data", str(a)]) == 0
    capsys.readouterr()
    before = (out / "m.pt").read_bytes()
    err = _error(capsys, [*args, "--data", str(b)])
    assert file_hash(a) in err and file_hash(b) in err and "--allow-data-change" in err
    assert (out / "m.pt").read_bytes() == before
    assert main([*args, "--data", str(b), "--allow-data-change"]) == 0
    train = torch.load(out / "m.pt", weights_only=True)["train"]
    assert train["dataset_hash"] == file_hash(b)
    assert train["previous_dataset_hashes"] == [file_hash(a)]


@pytest.mark.parametrize("early", [True, False])
def test_locked_run_folder_is_refused(tmp_path, two_datasets, capsys, monkeypatch, early):
    from mlip_scaling.training import runner

    if not early:  # the lock taken while this trainer prepared its data
        monkeypatch.setattr(runner, "_check_not_busy", lambda run_dir: None)
    out = tmp_path / "run"
    with exclusive_lock(out / LOCK_NAME, "held by the test"):
        err = _error(capsys, [*TINY, "--data", str(two_datasets[0]), "--out", str(out),
                              "--resume"])
    assert "another mlip-train is writing" in err and str(out) in err
    assert not (out / "last.pt").exists() and not (out / "metrics.jsonl").exists()


def test_dataset_path_is_stored_absolute(tmp_path, two_datasets, monkeypatch):
    a = two_datasets[0]
    monkeypatch.chdir(a.parent)
    out = tmp_path / "run"
    assert main([*TINY, "--data", a.name, "--out", str(out), "--export", "m.pt"]) == 0
    train = torch.load(out / "m.pt", weights_only=True)["train"]
    assert train["dataset"] == str(a.resolve())


def test_metrics_logger_writes_nothing_before_its_first_record(tmp_path, monkeypatch):
    import sys
    import types

    from mlip_scaling.training.logger import MetricsLogger

    class Writer:
        def __init__(self, folder: str) -> None:
            Path(folder).mkdir(parents=True)
            self.scalars = []

        def add_scalar(self, *args) -> None:
            self.scalars.append(args)

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard",
                        types.SimpleNamespace(SummaryWriter=Writer))
    logger = MetricsLogger(tmp_path / "run")
    assert not (tmp_path / "run").exists()  # a refused trainer leaves a busy folder alone
    logger.log("train", {"step": 1, "loss": 0.5})
    assert (tmp_path / "run" / "tensorboard").is_dir()
    assert logger._tb.scalars == [("train/loss", 0.5, 1)]


def test_resume_keeps_the_runs_hyperparameters_when_the_preset_changed(
        tmp_path, two_datasets, capsys, monkeypatch):
    from mlip_scaling.models import registry
    from mlip_scaling.training import runner

    out = tmp_path / "run"
    args = [*TINY, "--data", str(two_datasets[0]), "--out", str(out), "--export", "m.pt",
            "--resume"]
    assert main(args) == 0
    started = torch.load(out / "m.pt", weights_only=True)["model"]["config"]
    capsys.readouterr()
    real = registry.resolve_model

    def changed_preset(*a, **k):  # a later version's preset: another cutoff
        name, family, config = real(*a, **k)
        return name, family, {**config, "cutoff": config["cutoff"] + 0.5}

    monkeypatch.setattr(runner.registry, "resolve_model", changed_preset)
    assert main([*args, "--epochs", "3"]) == 0  # a larger budget continues the run
    err = capsys.readouterr().err
    assert "resuming with the run's own hyperparameters (cutoff differ" in err
    assert torch.load(out / "m.pt", weights_only=True)["model"]["config"] == started
