"""Every numeric flag of mlip-train, mlip-data and mlip-scaling is checked up front for range
and finiteness, and output paths for writability: one line on stderr, exit 2, no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlip_scaling.data.cli import main as data_main
from mlip_scaling.scaling.cli import main as scaling_main
from mlip_scaling.training import runner
from mlip_scaling.training.cli import main as train_main


def _error(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def no_data(monkeypatch):
    """Opening the dataset fails the test: every check must come before data preparation."""
    monkeypatch.setattr(runner.dataset, "open_source", pytest.fail)


def _unwritable(tmp_path: Path) -> Path:
    """A directory this process cannot create files in (root ignores permission bits)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if not os.access(locked, os.W_OK):
        return locked
    if Path("/proc").is_dir():
        return Path("/proc")
    pytest.skip("no unwritable directory available")


TRAIN_CASES = [
    (["--params", "0"], "--params: must be a finite number > 0, got '0'"),
    (["--params", "-5"], "--params: must be a finite number > 0, got '-5'"),
    (["--params", "inf"], "--params"),
    (["--lr", "nan"], "--lr: must be a finite number > 0, got 'nan'"),
    (["--lr", "0"], "--lr"),
    (["--epochs", "0"], "--epochs: must be a whole number >= 1"),
    (["--epochs", "2.5"], "--epochs"),
    (["--batch-size", "-4"], "--batch-size"),
    (["--max-steps", "0"], "--max-steps"),
    (["--max-flops", "nan"], "--max-flops"),
    (["--train-size", "0"], "--train-size"),
    (["--val-size", "nan"], "--val-size"),
    (["--test-size", "-0.1"], "--test-size"),
    (["--warmup", "inf"], "--warmup"),
    (["--min-lr-factor", "1.5"], "--min-lr-factor: must be a finite number in [0, 1]"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--ema-decay", "1"], "--ema-decay: must be a finite number in [0, 1)"),
    (["--clip-grad", "nan"], "--clip-grad"),
    (["--energy-weight", "-1"], "--energy-weight"),
    (["--force-weight", "nan"], "--force-weight"),
    (["--stress-weight", "inf"], "--stress-weight"),
    (["--seed", "-1"], "--seed"),
    (["--split-seed", "1e30"], "--split-seed"),
    (["--workers", "-1"], "--workers"),
    (["--threads", "-2"], "--threads"),
    (["--val-every", "0.5"], "--val-every"),
    (["--save-every", "0"], "--save-every"),
    (["--max-val-structures", "0"], "--max-val-structures"),
    (["--model-config", '{"cutoff": -1}'], "--model-config: cutoff must be a finite number > 0"),
    (["--model-config", '{"cutoff": NaN}'], "--model-config: cutoff"),
    (["--model-config", '{"num_layers": 0}'], "--model-config: num_layers must be a whole"),
    (["--model-config", '{"num_layers": 2.5}'], "--model-config: num_layers"),
    (["--model-config", '{"cutof": 5}'], "has no hyperparameter 'cutof'"),
    (["--model-config", '{"num_heads": 3}'], "rejects these hyperparameters"),
]


@pytest.mark.parametrize(("argv", "message"), TRAIN_CASES)
def test_train_numbers(tmp_path, capsys, no_data, argv, message):
    err = _error(capsys, train_main, [*argv, "--out", str(tmp_path / "run")])
    assert message in err
    assert not (tmp_path / "run").exists()


def test_train_config_file_numbers_obey_the_same_rules(tmp_path, capsys, no_data):
    config = tmp_path / "run.yaml"
    config.write_text("lr: .nan\n")
    assert "--lr must be a finite number > 0, got nan" in _error(
        capsys, train_main, ["--config", str(config)])
    config.write_text("params: 0\n")
    assert "--params must be" in _error(capsys, train_main, ["--config", str(config)])


def test_train_output_paths_are_checked_before_the_data(tmp_path, capsys, no_data):
    locked = _unwritable(tmp_path)
    err = _error(capsys, train_main, ["--out", str(locked / "run")])
    assert f"--out {locked / 'run'}: cannot write in {locked}" in err
    plain = tmp_path / "file.txt"
    plain.write_text("x")
    err = _error(capsys, train_main, ["--out", str(plain)])
    assert f"--out {plain}: exists and is not a directory" in err
    err = _error(capsys, train_main, ["--out", str(plain / "run")])
    assert "is a file, not a directory" in err
    folder = tmp_path / "run" / "model.pt"
    folder.mkdir(parents=True)
    err = _error(capsys, train_main, ["--out", str(tmp_path / "run"), "--export", str(folder)])
    assert f"--export {folder}: is a directory" in err and "--resume" not in err


DATA_CASES = [
    (["generate", "--structures", "0"], "--structures: must be a whole number >= 1, got '0'"),
    (["generate", "--structures", "-5"], "--structures"),
    (["generate", "--structures", "nan"], "--structures"),
    (["generate", "--seed", "-1"], "--seed"),
    (["generate", "--jobs", "0"], "--jobs"),
    (["generate", "--chunk-size", "0"], "--chunk-size"),
]


@pytest.mark.parametrize(("argv", "message"), DATA_CASES)
def test_data_numbers(tmp_path, capsys, argv, message):
    out = tmp_path / "x.h5"
    err = _error(capsys, data_main, [*argv, "--out", str(out)] if argv[0] == "generate" else argv)
    assert message in err and not out.exists()


def test_data_output_paths(tmp_path, capsys):
    err = _error(capsys, data_main, ["generate", "--structures", "2", "--out", str(tmp_path)])
    assert f"--out: {tmp_path}: is a directory" in err
    locked = _unwritable(tmp_path)
    err = _error(capsys, data_main, ["generate", "--out", str(locked / "x.h5")])
    assert f"cannot write in {locked}" in err
    err = _error(capsys, data_main, ["convert", "in.extxyz", str(tmp_path)])
    assert "is a directory" in err


SCALING_CASES = [
    (["sweep", "--epochs", "0"], "--epochs"),
    (["sweep", "--train-sizes", "0,10"], "--train-sizes must be a whole number >= 1, got '0'"),
    (["sweep", "--train-sizes", "10,nan"], "--train-sizes"),
    (["sweep", "--train-sizes", "10", "--max-flops=-1e12"], "--max-flops must be a finite"),
    (["sweep", "--train-sizes", "10", "--max-flops", "inf"], "--max-flops"),
    (["sweep", "--jobs", "0"], "--jobs"),
    (["sweep", "--seed", "-3"], "--seed"),
    (["sweep", "--slurm-time", "0"], "--slurm-time"),
    (["sweep", "--cpus", "0"], "--cpus"),
    (["sweep", "--train-sizes", "10", "--", "--lr", "nan"], "--lr: must be a finite number"),
    (["evaluate", ".", "--k-relax", "-1"], "--k-relax"),
    (["evaluate", ".", "--md-steps", "1.5"], "--md-steps"),
    (["evaluate", ".", "--md-temperature", "nan"], "--md-temperature"),
    (["evaluate", ".", "--max-test", "0"], "--max-test"),
    (["evaluate", ".", "--jobs", "-1"], "--jobs"),
    (["fit", ".", "--n-perm", "0"], "--n-perm"),
    (["report", ".", "--n-perm", "-1"], "--n-perm"),
    (["report", ".", "--md-steps", "inf"], "--md-steps"),
    (["bias", "x.npz", "--tau", "0"], "--tau"),
    (["bias", "x.npz", "--span", "nan"], "--span"),
    (["bias", "x.npz", "--bins", "1"], "--bins: must be a whole number in [2, 4096]"),
    (["bias", "x.npz", "--bins", "1e9"], "--bins"),
    (["bias", "x.npz", "--q-min", "0"], "--q-min"),
    (["bias", "x.npz", "--probes", "0"], "--probes"),
]


@pytest.mark.parametrize(("argv", "message"), SCALING_CASES)
def test_scaling_numbers(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    err = _error(capsys, scaling_main, [*argv, "--dry-run"] if argv[0] == "sweep" and "--" not in
                 argv else argv)
    assert message in err


def test_scaling_plan_file_numbers(tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text("models: [transformer-1.2k]\ntrain_sizes: [4]\nepochs: .nan\n")
    assert "--epochs must be a whole number >= 1, got nan" in _error(
        capsys, scaling_main, ["sweep", "--plan", str(plan), "--dry-run"])


def test_scaling_output_paths(tmp_path, capsys):
    plain = tmp_path / "file.txt"
    plain.write_text("x")
    err = _error(capsys, scaling_main, ["sweep", "--train-sizes", "4", "--out", str(plain)])
    assert "exists and is not a directory" in err
    assert "is a directory" in _error(capsys, scaling_main, ["fit", ".", "--json", str(tmp_path)])
    assert "is a directory" in _error(
        capsys, scaling_main, ["evaluate", ".", "--results", str(tmp_path)])
    assert "not a directory" in _error(capsys, scaling_main, ["report", ".", "--out", str(plain)])


def test_number_rules():
    from mlip_scaling.cli_args import FRACTION, POSITIVE, POSITIVE_INT, SEED, Number
    from mlip_scaling.errors import ConfigError

    assert POSITIVE_INT("1e3") == 1000 and isinstance(POSITIVE_INT("1e3"), int)
    assert POSITIVE("2.5e-3") == pytest.approx(2.5e-3, rel=1e-12)
    assert [FRACTION.accepts(v) for v in (0.0, 1.0, 1.0001, float("nan"))] == [
        True, True, False, False]
    assert not POSITIVE.accepts(True) and not SEED.accepts(2**64)
    assert Number(integer=True, low=2, high=8, high_open=True).describe() == (
        "a whole number in [2, 8)")
    with pytest.raises(ConfigError, match="--x must be a finite number > 0, got 'abc'"):
        POSITIVE.value("--x", "abc")


def _help(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_switches_do_not_claim_a_default_value(capsys):
    text = _help(scaling_main, ["evaluate"], capsys)
    line = next(x for x in text.splitlines() if x.strip().startswith("--no-downstream"))
    assert line.split(maxsplit=1)[1] == "test metrics only"
    pages = [_help(scaling_main, [c], capsys) for c in
             ("sweep", "evaluate", "fit", "report", "bias", "import-fairchem", "export")]
    pages += [_help(train_main, [], capsys), _help(data_main, ["convert"], capsys)]
    for page in pages:
        assert "(default: True)" not in " ".join(page.split())
