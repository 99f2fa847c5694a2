"""mlip-scaling sweep: plan, idempotence, plan files, and a real two-run sweep."""

from __future__ import annotations

import contextlib
import sys
import types

import pytest
import torch

from mlip_scaling.checkpoint import save_potential
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model, get_preset
from mlip_scaling.scaling import launch_local, sweep
from mlip_scaling.scaling.cli import main


def _finish(run: sweep.Run) -> None:
    family, config = get_preset("transformer-1.2k")
    run.out.mkdir(parents=True, exist_ok=True)
    save_potential(run.export, Potential(build_model(family, config), family, config, [29]))


def test_plan_grid_and_commands(tmp_path) -> None:
    runs = sweep.plan_runs(tmp_path, ["transformer-1.2k", "eqv2-1.5k"], [10, 30], 3,
                           max_flops=[1e9], data="d.h5", train_args=["--lr", "1e-3"])
    assert [r.name for r in runs] == ["transformer-1.2k-n10-c1e09", "transformer-1.2k-n30-c1e09",
                                      "eqv2-1.5k-n10-c1e09", "eqv2-1.5k-n30-c1e09"]
    cmd = runs[0].command
    assert cmd[:3] == [sys.executable, "-m", "mlip_scaling.training.cli"]
    for flag, value in (("--model", "transformer-1.2k"), ("--train-size", "10"),
                        ("--epochs", "3"), ("--max-flops", "1e+09"), ("--data", "d.h5"),
                        ("--export", "transformer-1.2k-n10-c1e09.pt"), ("--lr", "0.001")):
        assert cmd[cmd.index(flag) + 1] == value
    assert "--resume" in cmd and runs[0].export.parent == runs[0].out
    assert runs[0].config.lr == 1e-3 and runs[0].config.max_flops == 1e9


def test_dry_run_marks_finished_runs(tmp_path, capsys) -> None:
    runs = sweep.plan_runs(tmp_path, ["transformer-1.2k"], [10, 20], 1)
    _finish(runs[0])
    (runs[1].out).mkdir(parents=True)
    (runs[1].export).write_bytes(b"truncated")  # an unreadable export is not finished
    assert sweep.is_finished(runs[0]) and not sweep.is_finished(runs[1])
    rc = main(["sweep", "--models", "transformer-1.2k", "--train-sizes", "10,20", "--epochs",
               "1", "--out", str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "done  transformer-1.2k-n10" in out and "todo  transformer-1.2k-n20" in out
    assert "2 runs, 1 finished, 1 to run" in out


def test_plan_mismatches_name_changed_hyperparameters_not_added_keys(tmp_path) -> None:
    run = sweep.plan_runs(tmp_path, ["transformer-1.2k"], [5], 1)[0]
    family, config = get_preset("transformer-1.2k")
    run.out.mkdir(parents=True)
    older = {k: v for k, v in config.items() if k != "envelope"}  # a key added later
    save_potential(run.export, Potential(build_model(family, older), family, older, [29]))
    assert sweep.plan_mismatches(run) == []
    wider = {**older, "cutoff": config["cutoff"] + 1.0}
    save_potential(run.export, Potential(build_model(family, wider), family, wider, [29]))
    assert sweep.plan_mismatches(run) == ["hyperparameters cutoff"]


def test_plan_mismatches_name_a_changed_stopping_floor(tmp_path) -> None:
    """A file trained without the floor (or with another) is stale for a plan with one."""
    stop = {"patience": 3, "min_delta": 0.01}
    run = sweep.plan_runs(tmp_path, ["transformer-1.2k"], [5], None, fixed_steps=200,
                          stop={**stop, "min_steps": 0.8})[0]
    family, config = get_preset("transformer-1.2k")
    run.out.mkdir(parents=True)
    potential = Potential(build_model(family, config), family, config, [29])
    for floor, stale in ((0, ["min_steps 0 != 160"]), (160, []), (None, ["min_steps 0 != 160"])):
        criterion = {"monitor": "validation loss", **stop,
                     **({} if floor is None else {"min_steps": floor})}
        save_potential(run.export, potential, train={"stop_criterion": criterion})
        assert sweep.plan_mismatches(run) == stale


def test_finished_sweep_runs_nothing(tmp_path, monkeypatch, capsys) -> None:
    for r in sweep.plan_runs(tmp_path, ["transformer-1.2k"], [5], 1):
        _finish(r)
    monkeypatch.setattr(sweep.subprocess, "Popen", pytest.fail)
    assert main(["sweep", "--models", "transformer-1.2k", "--train-sizes", "5",
                 "--out", str(tmp_path)]) == 0
    assert "0 to run" in capsys.readouterr().out


_HOLD = ("import sys\nfrom mlip_scaling.io_utils import exclusive_lock\n"
         "with exclusive_lock(sys.argv[1]):\n    print('held', flush=True)\n"
         "    sys.stdin.readline()\n")


@pytest.mark.parametrize("finished_there", [True, False])
def test_run_held_by_another_process_is_waited_for(tmp_path, monkeypatch, capsys,
                                                   finished_there) -> None:
    """A second sweep on one folder: a run another live process holds is running
    elsewhere; waited for, it is done there or (if that process stopped) finished here."""
    import os
    import subprocess
    import threading
    from pathlib import Path

    from mlip_scaling.train_config import LOCK_NAME

    runs = sweep.plan_runs(tmp_path, ["transformer-1.2k"], [5, 6], 1)
    held = runs[0]
    held.out.mkdir(parents=True)
    root = str(Path(__file__).resolve().parents[1])
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(held.out / LOCK_NAME)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": root})
    assert holder.stdout.readline().strip() == "held"
    started = []

    def start(r: sweep.Run, log: bool) -> types.SimpleNamespace:
        started.append(r.name)
        _finish(r)
        return types.SimpleNamespace(poll=lambda: 0, returncode=0)

    def release() -> None:
        if finished_there:
            _finish(held)
        holder.stdin.close()  # the holder exits: the kernel frees its lock

    monkeypatch.setattr(launch_local, "_start", start)
    timer = threading.Timer(1.0, release)
    timer.start()
    try:
        assert launch_local._schedule(runs, 1, []) == 0
    finally:
        timer.join()
        holder.wait(timeout=30)
    out = capsys.readouterr().out
    assert f"{held.name}: running elsewhere (process {holder.pid}); waiting for it" in out
    assert (f"{held.name}: done elsewhere" in out) == finished_there
    assert started == [runs[1].name] + ([] if finished_there else [held.name])
    assert "FAILED" not in out and out.rstrip().endswith("all 2 runs done")


def test_plan_file(tmp_path, capsys) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("models: [transformer-1.2k]\ntrain_sizes: [4, 8, 16]\nepochs: 2\n"
                    "train_args: ['--batch-size', '4']\n")
    assert main(["sweep", "--plan", str(plan), "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 runs" in out and "--batch-size 4" in out
    plan.write_text("modles: [x]\n")
    with pytest.raises(SystemExit):
        main(["sweep", "--plan", str(plan), "--dry-run"])
    assert "modles" in capsys.readouterr().err


def test_bad_sizes_and_missing_submitit(tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", "--train-sizes", "10,abc", "--dry-run"])
    assert "--train-sizes" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(SystemExit):
        main(["sweep", "--train-sizes", "10", "--out", str(tmp_path), "--launcher", "slurm"])
    assert "slurm" in capsys.readouterr().err


def test_forwarded_args_seed_and_distinct_budget_names(tmp_path, capsys) -> None:
    assert main(["sweep", "--models", "transformer-1.2k", "--train-sizes", "10,10",
                 "--max-flops", "1.5e12,2e12", "--seed", "3", "--out", str(tmp_path),
                 "--dry-run", "--", "--lr", "1e-3", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out  # the repeated size is planned once
    assert "transformer-1.2k-n10-c1.5e12 " in out and "transformer-1.2k-n10-c2e12 " in out
    for flags in ("--lr 0.001 --batch-size 4", "--seed 3"):
        assert out.count(flags) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--train-sizes", "10", "--out", str(tmp_path), "--dry-run", "--",
              "--no-such-flag"])
    assert exit_info.value.code == 2
    assert "mlip-train rejects" in capsys.readouterr().err


def test_unknown_model_fails_before_training(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sweep.subprocess, "Popen", pytest.fail)
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--models", "transformer-1.2k,transfomer-9k", "--train-sizes", "5",
              "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "transfomer-9k" in capsys.readouterr().err


class _FakeExecutor:
    """Records what a submitit AutoExecutor would submit."""

    instances: list = []

    def __init__(self, folder) -> None:
        self.folder, self.params, self.jobs = folder, {}, []
        _FakeExecutor.instances.append(self)

    def update_parameters(self, **params) -> None:
        self.params.update(params)

    @contextlib.contextmanager
    def batch(self):
        yield

    def submit(self, fn, *args):
        self.jobs.append((fn, args))
        return types.SimpleNamespace(job_id=f"77_{len(self.jobs) - 1}")


def test_slurm_array_submits_unfinished_runs_with_torchrun(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "submitit", types.SimpleNamespace(AutoExecutor=_FakeExecutor))
    _finish(sweep.plan_runs(tmp_path, ["transformer-1.2k"], [5], 1)[0])
    assert main(["sweep", "--models", "transformer-1.2k", "--train-sizes", "5,10,20", "--out",
                 str(tmp_path), "--launcher", "slurm", "--gpus", "4", "--slurm-partition",
                 "gpu"]) == 0
    executor = _FakeExecutor.instances[-1]
    assert executor.params["gpus_per_node"] == 4 and executor.params["slurm_partition"] == "gpu"
    assert [fn for fn, _ in executor.jobs] == [sweep._run_command] * 2  # n5 is finished
    command = executor.jobs[0][1][0]
    assert command[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "4"]
    assert command[6:8] == ["-m", "mlip_scaling.training.cli"] and "10" in command
    assert "submitted 2 runs as Slurm array job 77" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from mlip_scaling.data.generate import generate_dataset

    path = tmp_path_factory.mktemp("data") / "emt.h5"
    return generate_dataset("emt", 40, path, workers=1, recipe="emt", progress=False)


def test_real_two_run_sweep_is_idempotent_and_resumes(tmp_path, tiny_data, capsys) -> None:
    args = ["sweep", "--models", "transformer-1.2k", "--train-sizes", "8,16", "--epochs", "1",
            "--out", str(tmp_path), "--data", str(tiny_data), "--", "--max-val-structures",
            "2", "--batch-size", "8", "--threads", "1", "--val-size", "4", "--test-size", "4"]
    assert main([*args[:1], "--jobs", "2", *args[1:]]) == 0  # both at once, largest first
    out = capsys.readouterr().out
    assert "[1/2] transformer-1.2k-n16: done" in out and "[2/2] transformer-1.2k-n8: done" in out
    assert "exported" in (tmp_path / "transformer-1.2k-n8" / "train.log").read_text()
    exports = sorted(tmp_path.rglob("transformer-1.2k-n*.pt"))
    assert [p.name for p in exports] == ["transformer-1.2k-n16.pt", "transformer-1.2k-n8.pt"]
    train = torch.load(exports[1], weights_only=True)["train"]
    assert train["n_train_structures"] == 8 and train["n_params"] == 1164 and train["flops"] > 0
    assert train["dataset"] == str(tiny_data)
    assert main(args) == 0
    assert "2 finished, 0 to run" in capsys.readouterr().out
    with pytest.raises(SystemExit) as changed:  # the plan changed: finished runs are stale
        main([*args, "--lr", "0.005"])
    err = capsys.readouterr().err.strip()
    assert changed.value.code == 2 and "\n" not in err
    assert ".pt: trained with other settings than the plan" in err and "transformer-1.2k-n" in err
    assert "lr 0.002 != 0.005" in err and "(and 1 more runs)" in err
    assert main([*args[:1], "--dry-run", *args[1:], "--lr", "0.005"]) == 0
    assert capsys.readouterr().out.count("STALE  transformer-1.2k-n") == 2
    exports[1].unlink()  # interrupted after training, before export: last.pt is resumed
    assert (exports[1].parent / "last.pt").is_file()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 finished, 1 to run" in out and "[1/1] transformer-1.2k-n8: done" in out
    resumed = torch.load(exports[1], weights_only=True)["train"]
    assert resumed["steps"] == train["steps"]  # nothing retrained


def test_fixed_steps_is_the_default_and_excludes_epochs(tmp_path, capsys) -> None:
    assert main(["sweep", "--models", "transformer-1.2k", "--train-sizes", "10,40",
                 "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"--epochs {sweep.DEFAULT_FIXED_STEPS} --max-steps "
                     f"{sweep.DEFAULT_FIXED_STEPS}") == 2
    runs = sweep.plan_runs(tmp_path, ["transformer-1.2k"], [10, 40], None, fixed_steps=7)
    for r in runs:
        assert r.command[r.command.index("--max-steps") + 1] == "7"
        assert r.command[r.command.index("--epochs") + 1] == "7"
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--fixed-steps", "10", "--epochs", "3", "--out", str(tmp_path),
              "--dry-run"])
    assert exit_info.value.code == 2 and "not both" in capsys.readouterr().err
    plan = tmp_path / "plan.yaml"
    plan.write_text("models: [transformer-1.2k]\ntrain_sizes: [4, 8]\nfixed_steps: 12\n")
    assert main(["sweep", "--plan", str(plan), "--out", str(tmp_path), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("--epochs 12 --max-steps 12") == 2


def test_fixed_steps_runs_share_steps_and_schedule(tmp_path, tiny_data) -> None:
    """The sweep's fixed-steps arguments give every data size the same steps and cosine
    schedule (ending at the floor on the last step); the record says budget "steps"."""
    from mlip_scaling.training.runner import run_training
    from mlip_scaling.training.state import load_state

    runs = sweep.plan_runs(tmp_path, ["transformer-1.2k"], [8, 24], None, data=str(tiny_data),
                           fixed_steps=6, train_args=["--batch-size", "4", "--threads", "1",
                                                      "--val-size", "4", "--test-size", "4",
                                                      "--max-val-structures", "2"])
    for r in runs:
        train = run_training(r.config, verbose=False)["train"]
        assert train["steps"] == 6 and train["budget"] == "steps"
        schedule = load_state(r.out / "last.pt")["scheduler"]
        assert schedule["total_steps"] == 6 and schedule["step_count"] == 6
    epochs = sweep.plan_runs(tmp_path / "e", ["transformer-1.2k"], [8], 2, data=str(tiny_data),
                             train_args=["--batch-size", "4", "--threads", "1", "--val-size",
                                         "4", "--test-size", "4", "--max-val-structures", "2"])
    train = run_training(epochs[0].config, verbose=False)["train"]
    assert train["budget"] == "epochs" and train["steps"] == 4


def test_runs_are_training_configs_from_flags_plan_and_train_options(tmp_path, capsys) -> None:
    """A plan's ``train`` mapping, ``--config`` and flags after ``--`` all reach each run's
    TrainConfig (flags win); -q stays an output flag; the plan's keys are checked."""
    config = tmp_path / "train.yaml"
    config.write_text("lr: 2e-3\nweight_decay: 0.5\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text("models: transformer-1.2k\ntrain_sizes: [4, 4, 8]\nepochs: 2\n"
                    "train: {batch_size: 8, lr: 1e-2, max-val-structures: 2}\n")
    options = sweep.load_plan(plan)
    assert options["train_sizes"] == [4, 4, 8] and options["models"] == ["transformer-1.2k"]
    flags = {"out": str(tmp_path / "s"), "train_args": f"--config {config} -q"}
    runs = sweep.sweep_runs(sweep.sweep_plan(flags, options), ["--lr", "5e-3"])
    assert [r.name for r in runs] == ["transformer-1.2k-n4", "transformer-1.2k-n8"]
    cfg = runs[1].config
    assert (cfg.batch_size, cfg.max_val_structures, cfg.weight_decay) == (8, 2, 0.5)
    assert cfg.lr == pytest.approx(5e-3, rel=1e-12) and cfg.epochs == 2 and cfg.train_size == 8
    assert cfg.resume and cfg.export == "transformer-1.2k-n8.pt"
    assert runs[1].command[-1] == "-q" and "--config" not in runs[1].command
    for text, message in (("train_size: [4]\n", "unknown option(s) train_size"),
                          ("train: {lr: -1}\n", "plan.yaml: train: --lr must be a finite"),
                          ("train_sizes: [4, x]\n", "--train-sizes must be a whole number")):
        plan.write_text(text)
        with pytest.raises(SystemExit) as exit_info:
            main(["sweep", "--plan", str(plan), "--out", str(tmp_path), "--dry-run"])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
