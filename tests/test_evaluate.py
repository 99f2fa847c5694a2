"""mlip-scaling evaluate on a hand-made folder of tiny model files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from mlip_scaling.checkpoint import save_potential
from mlip_scaling.data.store import StructureStore, write_store
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model, count_parameters, get_preset
from mlip_scaling.scaling import evaluate
from mlip_scaling.scaling.cli import main
from mlip_scaling.scaling.metrics import EVALUATIONS, metric, produced_by
from mlip_scaling.scaling.report import write_report
from mlip_scaling.training.state import STATE_FORMAT

SPLIT = {"val_size": 2, "test_size": 3, "seed": 0}


def _structures(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.61 * rng.uniform(0.98, 1.02), cubic=True)
        atoms.rattle(0.05, rng=rng)
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        out.append(atoms)
    return out


def _model_file(path, store, seed: int, oracle_free: bool = False) -> None:
    family, config = get_preset("transformer-1.2k")
    torch.manual_seed(seed)
    potential = Potential(build_model(family, config), family, config, species=[29],
                          reference_energies={29: 0.0})
    meta = StructureStore(store).metadata
    train = {"n_train_structures": 5 + seed, "n_params": count_parameters(family, config),
             "flops": 1e9 * (seed + 1), "model": "transformer-1.2k", "dataset": str(store),
             "dataset_name": meta["name"], "dataset_hash": meta["content_hash"],
             "oracle": meta.get("oracle"), "split": SPLIT}
    save_potential(path, potential, train=train)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    store = write_store(root / "cu.h5", _structures(12), {"name": "cu", "oracle": "emt"})
    bare = write_store(root / "bare.h5", _structures(12, seed=1), {"name": "bare"})
    (root / "run-a").mkdir()
    _model_file(root / "run-a" / "a.pt", store, 0)
    _model_file(root / "b.pt", store, 1)
    torch.save({"format": STATE_FORMAT, "step": 3}, root / "run-a" / "last.pt")
    return root, store, bare


def test_evaluate_records_and_cache(folder, monkeypatch) -> None:
    root, _, _ = folder
    records = evaluate.evaluate_directory(root, k_relax=1, md_steps=10, progress=False)
    assert [r["checkpoint"] for r in records] == ["b.pt", "run-a/a.pt"]  # last.pt skipped
    for rec in records:
        assert rec["status"] == "ok", rec["error"]
        m = rec["metrics"]
        for key in ("energy_mae", "energy_rmse", "force_mae", "force_rmse", "stress_mae",
                    "test_loss", "relax_rmsd", "relax_failure_rate", "md_stability",
                    "relax_adwt", "md_unstable"):
            assert m[key] is not None and m[key] >= 0
        assert m["energy_rmse"] >= m["energy_mae"]
        assert m["test_loss"] >= 2.5 * m["energy_mae"]
    saved = json.loads((root / evaluate.RESULTS_NAME).read_text())
    assert saved["format"] == evaluate.FORMAT and len(saved["records"]) == 2

    def boom(*args, **kwargs):
        raise AssertionError("a cached checkpoint was evaluated again")

    monkeypatch.setattr(evaluate, "evaluate_file", boom)
    again = evaluate.evaluate_directory(root, k_relax=1, md_steps=10, progress=False)
    assert again == records


def test_every_computed_metric_reaches_points_csv_and_the_fits(folder, tmp_path) -> None:
    root, _, _ = folder
    records = evaluate.evaluate_directory(root, k_relax=1, md_steps=10, k_phonon=1,
                                          k_elastic=1, phonon_min_length=4.0, progress=False)
    registered = {name for kind in EVALUATIONS for name in produced_by(kind)}
    for rec in records:
        assert set(rec["metrics"]) == registered  # relax_adwt, oracle metrics included
    write_report(root / evaluate.RESULTS_NAME, tmp_path, n_perm=10, quiet=True)
    with open(tmp_path / "points.csv", newline="") as fh:
        points = {row["checkpoint"]: row for row in csv.DictReader(fh)}
    fits = json.loads((tmp_path / "fits.json").read_text())
    fitted = {row["metric"] for row in fits["fits"]}
    for rec in records:
        for name, value in rec["metrics"].items():
            if value is None:
                continue
            assert float(points[rec["checkpoint"]][name]) == pytest.approx(value, rel=1e-12)
            assert (name in fitted) != (name in fits["not_fitted"]), name
    assert {"relax_adwt", "md_stability", "relax_failure_rate"} <= fitted
    for name in (n for n in produced_by("test") if n.endswith("_se")):  # 3 test structures
        assert all(float(points[r["checkpoint"]][name]) > 0 for r in records), name
    for name in ("md_oracle_stability", "relax_oracle_failures", "md_unstable"):
        assert fits["not_fitted"][name] == metric(name).not_fitted


def test_corrupt_file_is_a_failed_record(folder, tmp_path) -> None:
    root, store, _ = folder
    _model_file(tmp_path / "good.pt", store, 2)
    (tmp_path / "broken.pt").write_bytes(b"not a zip archive")
    records = evaluate.evaluate_directory(tmp_path, downstream=False, progress=False)
    status = {r["checkpoint"]: r["status"] for r in records}
    assert status == {"broken.pt": "failed", "good.pt": "ok"}
    broken = next(r for r in records if r["checkpoint"] == "broken.pt")
    assert "broken.pt" in broken["error"]


def test_missing_oracle_keeps_test_metrics(folder, tmp_path, capsys) -> None:
    _, _, bare = folder
    _model_file(tmp_path / "m.pt", bare, 0)
    rc = main(["evaluate", str(tmp_path), "--k-relax", "1", "--md-steps", "5", "--quiet"])
    assert rc == 0
    rec = json.loads((tmp_path / evaluate.RESULTS_NAME).read_text())["records"][0]
    assert rec["status"] == "ok" and rec["metrics"]["energy_mae"] is not None
    assert "relax_rmsd" not in rec["metrics"]
    assert "--oracle" in rec["error"] and "--oracle" in capsys.readouterr().out


def test_dataset_hash_mismatch_fails(folder, tmp_path) -> None:
    _, store, bare = folder
    _model_file(tmp_path / "m.pt", store, 0)
    records = evaluate.evaluate_directory(tmp_path, data=str(bare), downstream=False,
                                          progress=False)
    assert records[0]["status"] == "failed" and "hash" in records[0]["error"]


def test_empty_directory_is_an_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no model files" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny models trained by mlip-train's runner on a generated EMT dataset."""
    from mlip_scaling.data.generate import generate_dataset
    from mlip_scaling.training.config import TrainConfig
    from mlip_scaling.training.runner import run_training

    root = tmp_path_factory.mktemp("trained")
    data = generate_dataset("emt", 40, root / "emt.h5", workers=1, recipe="emt", progress=False)
    for n in (8, 16):
        cfg = TrainConfig(model="transformer-1.2k", data=str(data), train_size=n, epochs=2,
                          batch_size=8, val_size=4, test_size=4, max_val_structures=2,
                          device="cpu", out=str(root / "sweep" / f"n{n}"), threads=1)
        run_training(cfg.validate(), verbose=False)
    return root / "sweep"


def test_trained_models_downstream_and_exit_codes(trained, monkeypatch, capsys) -> None:
    rc = main(["evaluate", str(trained), "--k-relax", "1", "--md-steps", "20", "--quiet",
               "--jobs", "2"])  # the two new files side by side, in two processes
    assert rc == 0
    records = json.loads((trained / evaluate.RESULTS_NAME).read_text())["records"]
    assert sorted(r["n_train"] for r in records) == [8, 16]
    for rec in records:
        assert rec["status"] == "ok" and rec["error"] is None
        assert rec["family"] == "transformer" and rec["model"] == "transformer-1.2k"
        assert rec["flops"] > 0 and rec["dataset_name"] == "emt"
        assert rec["budget"] == "epochs" and 0 < rec["flops_matmul"] < rec["flops"]
        m = rec["metrics"]
        for key in ("test_loss", "force_mae", "relax_energy_error", "relax_rmsd",
                    "relax_failure_rate", "md_drift", "md_stability", "rdf_error"):
            assert m[key] is not None and np.isfinite(m[key]) and m[key] >= 0, key
        assert 0 <= m["relax_rmsd"] <= 1 and 0 <= m["md_stability"] <= 1
    capsys.readouterr()

    monkeypatch.setattr(evaluate, "evaluate_file", pytest.fail)  # all cached now
    assert main(["evaluate", str(trained), "--k-relax", "1", "--md-steps", "20", "--quiet"]) == 0
    # two runs are too few for any law: fit says so and exits 1, never a bogus exponent
    assert main(["fit", str(trained), "--metric", "test_loss", "--n-perm", "5"]) == 1
    assert "no law fitted where the runs are too few" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(trained / "nothing-here")])
    assert exit_info.value.code == 2
    assert "nothing-here" in capsys.readouterr().err


def test_relax_max_atoms_limits_downstream_structures(folder, tmp_path) -> None:
    _, store, _ = folder
    _model_file(tmp_path / "m.pt", store, 0)
    rec = evaluate.evaluate_directory(tmp_path, k_relax=2, md_steps=5, relax_max_atoms=1,
                                      md_min_length=6.0, progress=False)[0]
    assert rec["status"] == "ok" and rec["settings"]["relax_max_atoms"] == 1
    assert rec["settings"]["md_min_length"] == 6.0
    assert "relax_rmsd" not in rec["metrics"] and "md_drift" not in rec["metrics"]
    assert rec["metrics"]["test_loss"] is not None
