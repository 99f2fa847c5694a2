"""Evaluate never drops records it did not replace, retries failures, stores resolvable paths."""

from __future__ import annotations

import json

import pytest
from test_evaluate import _model_file, _structures

from mlip_scaling.data.store import write_store
from mlip_scaling.errors import DataError
from mlip_scaling.io_utils import file_hash
from mlip_scaling.scaling import evaluate
from mlip_scaling.scaling.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return write_store(folder / "cu.h5", _structures(12), {"name": "cu", "oracle": "emt"})


def _evaluate(folder, **kwargs) -> list[dict]:
    return evaluate.evaluate_directory(folder, downstream=False, progress=False, **kwargs)


def _saved(path) -> list[dict]:
    return json.loads(path.read_text())["records"]


def test_shared_results_file_keeps_other_folders(tmp_path, store):
    a, b, shared = tmp_path / "a", tmp_path / "b", tmp_path / "shared.json"
    for folder, seeds in ((a, (0, 1)), (b, (2,))):
        folder.mkdir()
        for seed in seeds:
            _model_file(folder / f"m{seed}.pt", store, seed)
    _evaluate(a, results_path=shared)
    records = _evaluate(b, results_path=shared)
    assert [r["checkpoint"] for r in records] == ["b/m2.pt"]
    saved = _saved(shared)
    assert sorted(r["checkpoint"] for r in saved) == ["a/m0.pt", "a/m1.pt", "b/m2.pt"]
    assert all(r["status"] == "ok" for r in saved)


def test_moved_checkpoint_keeps_its_record_and_is_listed(tmp_path, store, capsys):
    root = tmp_path / "models"
    root.mkdir()
    for seed in (0, 1):
        _model_file(root / f"m{seed}.pt", store, seed)
    _evaluate(root)
    moved = tmp_path / "elsewhere.pt"
    (root / "m1.pt").rename(moved)
    assert main(["evaluate", str(root), "--no-downstream", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "kept 1 record(s)" in out and "m1.pt" in out and "missing file" in out
    saved = _saved(root / evaluate.RESULTS_NAME)
    assert [r["hash"] for r in saved] == [file_hash(root / "m0.pt"), file_hash(moved)]
    moved.rename(root / "renamed.pt")  # back in the folder under another name: reused
    records = _evaluate(root)
    assert [r["checkpoint"] for r in records] == ["m0.pt", "renamed.pt"]
    assert len(_saved(root / evaluate.RESULTS_NAME)) == 2


def test_failed_evaluation_is_retried(tmp_path, store, monkeypatch):
    data = tmp_path / "cu.h5"
    data.write_bytes(store.read_bytes())
    root = tmp_path / "models"
    root.mkdir()
    _model_file(root / "m.pt", data, 0)
    data.rename(tmp_path / "away.h5")
    assert _evaluate(root)[0]["status"] == "failed"
    (tmp_path / "away.h5").rename(data)  # the cause is fixed: the next run evaluates again
    calls = []
    real = evaluate.evaluate_file
    monkeypatch.setattr(evaluate, "evaluate_file", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert _evaluate(root)[0]["status"] == "ok" and calls == [1]
    assert _evaluate(root)[0]["status"] == "ok" and calls == [1]  # success is cached


def test_dataset_path_resolves_from_any_directory(tmp_path, store, monkeypatch):
    root = tmp_path / "models"
    root.mkdir()
    _model_file(root / "m.pt", store, 0)
    monkeypatch.chdir(store.parent)
    rec = _evaluate(root, data=store.name)[0]
    assert rec["status"] == "ok" and rec["settings"]["data"] == str(store.resolve())
    monkeypatch.chdir(tmp_path)  # the stored settings work from elsewhere: cache is reused
    assert _evaluate(root, data=rec["settings"]["data"]) == [rec]


@pytest.mark.parametrize("payload", [[1, 2], {"format": evaluate.FORMAT, "records": {}},
                                     {"format": evaluate.FORMAT, "records": [{"x": 1}]}])
def test_results_file_of_the_wrong_structure(tmp_path, store, payload):
    _model_file(tmp_path / "m.pt", store, 0)
    (tmp_path / evaluate.RESULTS_NAME).write_text(json.dumps(payload))
    with pytest.raises(DataError, match="results"):
        _evaluate(tmp_path)


def test_report_evaluates_models_whose_record_failed(tmp_path, store, monkeypatch):
    from mlip_scaling.scaling.evaluate import evaluate_missing, missing_models

    _model_file(tmp_path / "m.pt", store, 0)
    failed = {"checkpoint": "m.pt", "hash": file_hash(tmp_path / "m.pt"), "status": "failed",
              "error": "was broken", "settings": {"downstream": False}}
    (tmp_path / evaluate.RESULTS_NAME).write_text(
        json.dumps({"format": evaluate.FORMAT, "records": [failed]}))
    calls = []
    monkeypatch.setattr(evaluate, "evaluate_directory",
                        lambda d, **kw: calls.append((d, kw["downstream"])))
    assert missing_models(tmp_path) == [tmp_path / "m.pt"]
    evaluate_missing(tmp_path, {"oracle": None, "downstream": False}, progress=False)
    assert calls == [(tmp_path, False)]
