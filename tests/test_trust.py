"""No code runs from files: oracles named in datasets, results or settings resolve only to
built-ins; a ``module:`` oracle runs only when typed on the command line; results files of
the wrong structure are one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from ase.calculators.emt import EMT
from test_evaluate import _structures as labelled  # n rattled Cu cells labelled by EMT

from mlip_scaling.checkpoint import save_potential
from mlip_scaling.data import oracles
from mlip_scaling.data.oracles import check_oracle, get_oracle
from mlip_scaling.data.store import StructureStore, write_store
from mlip_scaling.errors import ConfigError
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model, get_preset
from mlip_scaling.scaling import evaluate
from mlip_scaling.scaling.cli import main

REPO = Path(__file__).resolve().parents[1]
LABCALC = "open('LABCALC_RAN', 'w').close()\n\ndef make():\n    raise SystemExit(0)\n"


def model_on(path: Path, store: Path) -> Path:
    """A tiny transformer model file whose train record names ``store``."""
    family, config = get_preset("transformer-1.2k")
    torch.manual_seed(0)
    potential = Potential(build_model(family, config), family, config, species=[29],
                          reference_energies={29: 0.0})
    meta = StructureStore(store).metadata
    train = {"dataset": str(store), "dataset_hash": meta["content_hash"],
             "split": {"val_size": 2, "test_size": 2, "seed": 0}}
    return save_potential(path, potential, train=train)


def folder_with_oracle(root: Path, oracle: str) -> Path:
    """``root`` holding a dataset whose metadata names ``oracle`` and one model on it."""
    root.mkdir(parents=True, exist_ok=True)
    store = write_store(root / "d.h5", labelled(8), {"name": "d", "oracle": oracle})
    model_on(root / "m.pt", store)
    return root


@pytest.mark.parametrize("spec", ["module:os:abort", "module:tempfile:mkdtemp",
                                  "module:labcalc:make"])
def test_check_oracle_refuses_code_unless_typed(spec):
    with pytest.raises(ConfigError, match="would import and run Python code") as err:
        check_oracle(spec, trusted=False, where="data.h5")
    message = str(err.value)
    assert "\n" not in message and message.startswith("data.h5: ")
    assert f"--oracle {spec}" in message  # says how to run it on purpose
    assert check_oracle(spec, trusted=True) == spec  # typed by the user: allowed


@pytest.mark.parametrize("spec", ["emt", "sw", "tersoff", "tersoff:Si", "mixed:emt+sw",
                                  "teacher:chgnet"])
def test_builtin_oracles_pass_from_files(spec):
    assert check_oracle(spec, trusted=False) == spec


def test_file_specs_reach_no_other_code(tmp_path):
    with pytest.raises(ConfigError, match="unknown Tersoff parameter set"):
        get_oracle("tersoff:__builtins__")  # only parameter tables, never other attributes
    with pytest.raises(ConfigError, match="no such potential file"):
        check_oracle(f"eam:{tmp_path / 'missing.eam.alloy'}")
    for bad in ("", "module:", "eam:", None, 3):
        with pytest.raises(ConfigError):
            check_oracle(bad)


def test_module_oracle_in_dataset_is_never_called(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "abort", lambda: calls.append("abort"))
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: calls.append("mkdtemp") or "x")
    imported = []
    monkeypatch.setattr(oracles, "_from_module", lambda spec: imported.append(spec) or EMT())
    for spec in ("module:os:abort", "module:tempfile:mkdtemp"):
        root = folder_with_oracle(tmp_path / spec.split(":")[1], spec)
        rec = evaluate.evaluate_directory(root, k_relax=1, md_steps=0, progress=False)[0]
        assert rec["status"] == "failed" and "would import and run Python code" in rec["error"]
        assert rec["metrics"]["energy_mae"] is not None  # test metrics are kept
    assert calls == [] and imported == []


def test_refusal_from_evaluate_cli_in_a_subprocess(tmp_path):
    """A dataset naming os.abort, and one naming a labcalc.py lying beside it, run from that
    folder (on sys.path for ``python -m``): evaluate refuses both, one line each."""
    root = tmp_path / "lab"
    folder_with_oracle(root / "a", "module:os:abort")
    folder_with_oracle(root / "b", "module:labcalc:make")
    (root / "labcalc.py").write_text(LABCALC)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mlip_scaling.scaling.cli", "evaluate", ".",
                           "--k-relax", "1", "--md-steps", "0", "--quiet"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]  # not 134 (SIGABRT)
    assert "Traceback" not in proc.stderr
    refusals = [line for line in proc.stdout.splitlines() if "would import" in line]
    assert len(refusals) == 2 and all("--oracle module:" in line for line in refusals)
    assert not (root / "LABCALC_RAN").exists()


def test_typed_module_oracle_runs(tmp_path, capsys):
    root = folder_with_oracle(tmp_path / "typed", "emt")
    rc = main(["evaluate", str(root), "--oracle", "module:ase.calculators.emt:EMT",
               "--k-relax", "1", "--md-steps", "0", "--quiet"])
    rec = json.loads((root / evaluate.RESULTS_NAME).read_text())["records"][0]
    assert rc == 0 and rec["status"] == "ok", rec["error"]
    assert rec["metrics"]["relax_rmsd"] is not None
    # the same spec coming back from the results file is data: report refuses it
    model_on(root / "m2.pt", root / "d.h5")
    torch.save({**torch.load(root / "m2.pt", weights_only=True), "metrics": {"x": 1.0}},
               root / "m2.pt")  # new content hash: report must evaluate it
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(root), "--quiet", "--n-perm", "2"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err
    assert evaluate.RESULTS_NAME in err and "would import and run Python code" in err


def test_library_default_is_untrusted(tmp_path):
    root = folder_with_oracle(tmp_path / "lib", "emt")
    with pytest.raises(ConfigError, match="would import"):
        evaluate.evaluate_directory(root, oracle="module:os:abort", progress=False)


BAD_RESULTS = {
    "list": ([], "JSON object"),
    "records-dict": ({"format": evaluate.FORMAT, "records": {"a": 1}}, "'records' must be a"),
    "record-str": ({"format": evaluate.FORMAT, "records": ["x"]}, "record 0 must be an object"),
    "settings-list": ({"format": evaluate.FORMAT, "records": [{"hash": "h", "settings": [1]}]},
                      "record 0: field 'settings'"),
    "metrics-str": ({"format": evaluate.FORMAT, "records": [{"metrics": {"test_loss": "x"}}]},
                    "metric 'test_loss'"),
    "n-params-bool": ({"format": evaluate.FORMAT, "records": [{"n_params": True}]},
                      "field 'n_params'"),
    "oracle-int": ({"format": evaluate.FORMAT, "records": [{"settings": {"oracle": 3}}]},
                   "settings: field 'oracle'"),
    "no-records": ({"format": evaluate.FORMAT}, "no 'records'"),
}


@pytest.fixture(scope="module")
def one_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    store = write_store(root / "d.h5", labelled(8), {"name": "d", "oracle": "emt"})
    model_on(root / "m.pt", store)
    return root


@pytest.mark.parametrize("case", sorted(BAD_RESULTS))
def test_results_of_wrong_structure(case, one_model, capsys):
    payload, expected = BAD_RESULTS[case]
    results = one_model / evaluate.RESULTS_NAME
    results.write_text(json.dumps(payload))
    for argv in (["evaluate", str(one_model), "--no-downstream", "--quiet"],
                 ["fit", str(results)], ["report", str(one_model), "--no-evaluate"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2, argv
        assert "\n" not in err and str(results) in err and expected in err, err
        assert "AttributeError" not in err


@pytest.mark.parametrize("family", ["os:system", "mlip_scaling.models.transformer:Transformer",
                                    "subprocess"])
def test_family_named_by_a_file_reaches_only_the_code_table(family, monkeypatch):
    """A model file's family picks an entry of registry.FAMILIES; it is never a module path."""
    import importlib

    imported = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda m, *a: imported.append(m) or
                        real(m, *a))
    with pytest.raises(ConfigError, match="unknown model family"):
        build_model(family, {})
    assert imported == []


def test_study_plan_and_dataset_recipe_cannot_name_code(tmp_path, monkeypatch):
    """A plan's recipe is a built-in name; an oracle spec in its place is refused unimported."""
    from mlip_scaling.scaling.study import _generate, load_study

    called = []
    monkeypatch.setattr(oracles, "_from_module", lambda spec: called.append(spec))
    plan = tmp_path / "plan.yaml"
    plan.write_text("recipe: 'module:os:getcwd'\nfamilies: {transformer: [transformer-1.2k]}\n"
                    "train_sizes: [4]\n")
    with pytest.raises(ConfigError, match="unknown recipe"):
        _generate(load_study(plan), tmp_path / "out", jobs=1, quiet=True)
    assert called == []
