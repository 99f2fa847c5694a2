"""mlip-train end to end on a tiny model, config precedence, and bad inputs (exit 2, one line)."""

from __future__ import annotations

import subprocess
import sys

import ase.io
import pytest
import torch
from test_training_helpers import emt_structures

from mlip_scaling.checkpoint import load_potential
from mlip_scaling.training.cli import main, parse_config

TINY = ["--model", "transformer", "--params", "1000", "--batch-size", "4", "--val-size", "4",
        "--test-size", "4", "--train-size", "8", "--epochs", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def extxyz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "emt.extxyz"
    ase.io.write(path, emt_structures(16, seed=11))
    return path


@pytest.fixture(scope="module")
def no_stress(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "nostress.extxyz"
    structures = emt_structures(16, seed=12)
    for atoms in structures:
        del atoms.info["stress"]
    ase.io.write(path, structures)
    return path


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_help_lists_every_flag_with_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--model", "--params", "--data", "--train-size", "--val-size", "--epochs",
                 "--max-steps", "--max-flops", "--lr", "--warmup", "--min-lr-factor",
                 "--batch-size", "--amp", "--energy-weight", "--force-weight", "--stress-weight",
                 "--ema-decay", "--clip-grad", "--seed", "--device", "--out", "--resume",
                 "--export", "--compile", "--workers", "--val-every", "--config"):
        assert flag in text, flag
    assert "(default: 2.5)" in text and "(default: 20.0)" in text


def test_config_file_is_overridden_by_flags(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("epochs: 7\nlr: 1e-4\nbatch-size: 8\nmodel_config: {dim: 4}\n")
    cfg = parse_config(["--config", str(cfg_file), "--lr", "0.01", "--amp"])
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.amp) == (7, 0.01, 8, "auto")
    assert cfg.model_config == {"dim": 4}


def test_train_export_and_resume(tmp_path, extxyz, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--data", str(extxyz), "--out", str(out), "--export", "m.pt"]) == 0
    err = capsys.readouterr().err
    assert "parameters" in err and "FLOP/step" in err and "precision off" in err
    ckpt = torch.load(out / "m.pt", weights_only=True)
    train, metrics = ckpt["train"], ckpt["metrics"]
    assert train["n_train_structures"] == 8 and train["steps"] == 4 and train["epochs"] == 2
    assert train["flops"] > 0 and train["pf_days"] == pytest.approx(train["flops"] / 8.64e19)
    assert train["split"] == {"val_size": 4, "test_size": 4, "seed": 0, "train_size": 8}
    for key in ("n_params", "lr", "amp", "batch_size", "seed", "dataset", "dataset_name",
                "dataset_hash", "oracle", "wall_time_s", "device"):
        assert key in train, key
    for key in ("energy_mae", "force_mae", "stress_mae", "loss"):
        assert metrics[key] is not None and metrics[key] >= 0, key
    potential = load_potential(out / "m.pt")
    assert potential.species == [13, 29]
    log = (out / "metrics.jsonl").read_text()
    assert '"kind": "val"' in log and '"kind": "train"' in log
    before = (out / "last.pt").read_bytes()
    assert main([*TINY, "--data", str(extxyz), "--out", str(out), "--export", "m.pt",
                 "--resume"]) == 0  # finished run: nothing to train, export again
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4
    assert (out / "last.pt").read_bytes() == before
    capsys.readouterr()
    # a fresh start in the same directory would overwrite it: refused
    err = _error(capsys, [*TINY, "--data", str(extxyz), "--out", str(out), "--export", "m.pt"])
    assert "--resume" in err and (out / "last.pt").read_bytes() == before


@pytest.mark.parametrize("extra, message", [
    (["--model", "nonsense-7k"], "unknown model"),
    (["--train-size", "500"], "exceeds"),
    (["--config", "/nonexistent/run.yaml"], "cannot read config"),
    (["--data", "/nonexistent/x.extxyz"], "no such dataset"),
    (["--lr", "-1"], "--lr: must be a finite number > 0"),
    (["--compile"], "torch.compile"),
    (["--batch-size", "3", "--amp", "fp16"], "fp16 needs a CUDA"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, extxyz, capsys, extra, message):
    out = tmp_path / "run"
    err = _error(capsys, [*TINY, "--data", str(extxyz), "--out", str(out), *extra])
    assert message in err
    assert not out.exists()


def test_without_stress_labels_the_stress_term_is_off_by_default(tmp_path, no_stress, capsys):
    out = tmp_path / "run"
    argv = [*TINY, "--data", str(no_stress), "--out", str(out), "--export", "m.pt"]
    assert main(argv) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "stress label" in line]
    assert said == [f"{no_stress}: no training structure has a stress label; stress term off "
                    "(--stress-weight 0)"]
    assert torch.load(out / "last.pt", weights_only=False)["config"]["stress_weight"] == 0.0
    assert main([*argv, "--resume", "--epochs", "3"]) == 0  # the same decision on resume


def test_isolated_atoms_without_edges_train(tmp_path):
    """Single-atom reference structures: no edges, an energy that does not depend on
    positions (legal); the FLOP probe counts such a step."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    structures = []
    for i in range(16):
        atoms = Atoms("Cu", positions=[[5.0, 5.0, 5.0]], cell=[10.0] * 3, pbc=False)
        atoms.calc = SinglePointCalculator(atoms, energy=-0.1 * i, forces=[[0.0, 0.0, 0.0]])
        structures.append(atoms)
    data = tmp_path / "isolated.extxyz"
    ase.io.write(data, structures)
    out = tmp_path / "run"
    assert main([*TINY, "--data", str(data), "--out", str(out), "--export", "m.pt"]) == 0
    assert torch.load(out / "m.pt", weights_only=True)["train"]["flops"] > 0


def test_invalid_yaml_and_console_exit_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    proc = subprocess.run([sys.executable, "-m", "mlip_scaling.training.cli", "--config",
                           str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "not valid YAML" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_out_of_memory_suggests_a_smaller_batch(monkeypatch, capsys):
    from mlip_scaling.training import runner

    def oom(cfg, verbose=True):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runner, "run_training", oom)
    err = _error(capsys, ["--batch-size", "16"])
    assert "out of memory" in err and "--batch-size 8" in err
