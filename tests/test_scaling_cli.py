"""mlip-scaling fit / report / bias: exit codes, one-line errors, evaluation of missing
results only, bias from a .npz and from a folder of replicate model files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from test_report import synthetic_records, write_results

from mlip_scaling.checkpoint import save_potential
from mlip_scaling.data.store import StructureStore, write_store
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model, get_preset
from mlip_scaling.scaling import evaluate
from mlip_scaling.scaling.cli import main


def _loss_only(records: list[dict]) -> list[dict]:
    for rec in records:
        rec["metrics"] = {"test_loss": rec["metrics"].get("test_loss")}
    return records


@pytest.fixture
def results_dir(tmp_path):
    write_results(tmp_path / "scaling_results.json", _loss_only(synthetic_records()))
    return tmp_path


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_fit_prints_table_and_writes_json(results_dir, capsys, tmp_path):
    out = tmp_path / "fits.json"
    rc = main(["fit", str(results_dir), "--metric", "test_loss", "--axis", "data,joint",
               "--n-perm", "100", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "test_loss" in text and "excluded broken/failed.pt" in text
    rows = json.loads(out.read_text())
    assert {r["axis"] for r in rows} == {"data", "joint"}
    assert {r["family"] for r in rows} == {"transformer", "eqv2"}
    assert "fitted slice" in text and "p (trend)" in text and "indicative" in text
    assert all(r["slice"]["rule"] for r in rows)
    assert all(r["p_trend"] < 0.05 for r in rows if r["status"] == "ok")


def test_fit_without_any_law_exits_1(tmp_path, capsys):
    records = [r for r in synthetic_records() if r["checkpoint"].endswith("n3_d3.pt")]
    write_results(tmp_path / "scaling_results.json", records)
    assert main(["fit", str(tmp_path), "--n-perm", "50"]) == 1
    assert "no law fitted where the runs are too few" in capsys.readouterr().out


def test_report_on_results_file_and_bad_input(results_dir, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(results_dir / "scaling_results.json"), "--out", str(out),
                 "--n-perm", "100", "--quiet", "--n-boot", "20"]) == 0
    assert (out / "report.html").is_file() and (out / "test_loss.svg").is_file()
    err = _error(capsys, ["fit", str(results_dir), "--metric", "nonsense"])
    assert "nonsense" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no model files" in _error(capsys, ["report", str(empty)])
    assert "no such" in _error(capsys, ["report", str(tmp_path / "missing")])
    (empty / "scaling_results.json").write_text("[1, 2")
    assert "unreadable" in _error(capsys, ["fit", str(empty)])


def test_deeply_nested_files_are_one_line_errors(tmp_path, capsys):
    deep = "[" * 100_000 + "]" * 100_000  # valid JSON (and YAML) beyond any recursion limit
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "scaling_results.json").write_text(deep)
    for command in ("fit", "report"):
        err = _error(capsys, [command, str(folder)])
        assert "nested too deeply" in err and "scaling_results.json" in err
    plan = tmp_path / "plan.yaml"
    plan.write_text(deep)
    err = _error(capsys, ["sweep", "--plan", str(plan), "--out", str(tmp_path / "s")])
    assert "nested too deeply" in err and str(plan) in err


def test_report_refuses_mixed_datasets_unless_allowed(tmp_path, capsys):
    write_results(tmp_path / "scaling_results.json", _loss_only(synthetic_records(mixed=True)))
    err = _error(capsys, ["report", str(tmp_path), "--quiet", "--n-perm", "50"])
    assert "different datasets" in err and "--allow-mixed" in err
    assert main(["report", str(tmp_path), "--quiet", "--n-perm", "50", "--allow-mixed",
                 "--n-boot", "20"]) == 0


def test_report_evaluates_only_model_files_without_results(results_dir, monkeypatch):
    calls = []

    def fake_evaluate(directory, **kwargs):
        calls.append(kwargs)
        return []

    monkeypatch.setattr(evaluate, "evaluate_directory", fake_evaluate)
    records = json.loads((results_dir / "scaling_results.json").read_text())["records"]
    for rec in records:
        rec["settings"] = {"k_relax": 1, "md_steps": 7, "downstream": True, "oracle": None,
                           "data": None, "max_test": 4, "md_temperature": 300.0}
    write_results(results_dir / "scaling_results.json", records)
    model = results_dir / "new.pt"
    torch.save({"weights": torch.zeros(2)}, model)
    argv = ["report", str(results_dir), "--quiet", "--n-perm", "50", "--n-boot", "20"]
    assert main(argv + ["--md-steps", "9", "--relax-max-atoms", "6", "--md-min-length", "7"]) == 0
    assert len(calls) == 1
    assert calls[0]["k_relax"] == 1 and calls[0]["max_test"] == 4 and calls[0]["md_steps"] == 9
    assert calls[0]["relax_max_atoms"] == 6 and calls[0]["md_min_length"] == 7.0
    records[0]["hash"] = evaluate.file_hash(model)  # now every model file has a record
    write_results(results_dir / "scaling_results.json", records)
    assert main(argv) == 0 and len(calls) == 1


def test_bias_from_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.normal(size=30)
    np.savez(tmp_path / "p.npz", predictions=labels + rng.normal(0, 0.02, (8, 30)),
             labels=labels)
    assert main(["bias", str(tmp_path / "p.npz"), "--tau", "0.02",
                 "--json", str(tmp_path / "b.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["replicates"] == 8 and printed["bound_slack_bits"] >= 0
    assert json.loads((tmp_path / "b.json").read_text()) == printed
    np.savez(tmp_path / "bad.npz", predictions=np.zeros((3, 4)))
    assert "labels" in _error(capsys, ["bias", str(tmp_path / "bad.npz")])
    np.savez(tmp_path / "one.npz", predictions=np.zeros((1, 4)), labels=np.zeros(4))
    assert "replicates" in _error(capsys, ["bias", str(tmp_path / "one.npz")])


def _cu_structures(n: int) -> list:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.61 * rng.uniform(0.98, 1.02), cubic=True)
        atoms.rattle(0.05, rng=rng)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        out.append(atoms)
    return out


def _replicate(path, store, seed: int) -> None:
    family, config = get_preset("transformer-1.2k")
    torch.manual_seed(seed)
    potential = Potential(build_model(family, config), family, config, species=[29],
                          reference_energies={29: 0.0})
    meta = StructureStore(store).metadata
    save_potential(path, potential, train={
        "dataset": str(store), "dataset_hash": meta["content_hash"], "seed": seed,
        "split": {"val_size": 2, "test_size": 3, "seed": 0}})


def test_bias_from_replicate_model_files(tmp_path, capsys):
    store = write_store(tmp_path / "cu.h5", _cu_structures(12), {"name": "cu"})
    reps = tmp_path / "replicates"
    reps.mkdir()
    for seed in range(3):
        _replicate(reps / f"r{seed}.pt", store, seed)
    torch.save({"weights": torch.zeros(2)}, reps / "not-a-model.pt")  # skipped, and named
    assert main(["bias", str(reps), "--tau", "0.05", "--bins", "16"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "skipped" in captured.err and "not-a-model.pt" in captured.err
    assert out["replicates"] == 3 and out["probes"] == 3  # the 3-structure test split
    assert out["bound_slack_bits"] >= 0
    assert main(["bias", str(reps), "--quantity", "forces", "--tau", "0.1"]) == 0
    assert json.loads(capsys.readouterr().out)["probes"] == 3 * 4 * 3  # 3 structures x 4 atoms
    for name in ("r1.pt", "r2.pt", "not-a-model.pt"):
        (reps / name).unlink()
    assert "replicate" in _error(capsys, ["bias", str(reps)])
