"""Report from a synthetic results file: planted exponents, every output written, failed and
NaN records excluded and listed, mixed datasets refused."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.scaling.report import build_report, fit_records, load_records, split_records
from mlip_scaling.scaling.slices import axis_points

FAMILIES = {"transformer": (0.30, 0.35), "eqv2": (0.45, 0.40)}  # planted (a, b)


def _record(family, i, j, n, d, loss, dataset="abc", **extra) -> dict:
    return {"checkpoint": f"{family}/n{i}_d{j}.pt", "hash": f"{family}{i}{j}", "family": family,
            "model": f"{family}-{n}", "n_params": int(n), "n_train": int(d),
            "flops": 6.0 * n * d * 20, "dataset_name": "default", "dataset_hash": dataset,
            "status": "ok", "error": None, **extra,
            "metrics": {"test_loss": loss, "relax_rmsd": 0.2 * loss**0.5, "md_drift": 3.0 * loss}}


def synthetic_records(mixed: bool = False, seed: int = 0) -> list[dict]:
    """Two families, 4 model sizes x 4 data sizes, L = E + A/N^a + B/D^b with 1 % noise,
    plus one failed and one NaN record."""
    rng = np.random.default_rng(seed)
    records = []
    for family, (a, b) in FAMILIES.items():
        for i, n in enumerate([1e3, 4e3, 1.6e4, 6.4e4]):
            for j, d in enumerate([100, 400, 1600, 6400]):
                loss = (0.002 + 5 / n**a + 2 / d**b) * np.exp(rng.normal(0, 0.01))
                dataset = "def" if mixed and family == "eqv2" else "abc"
                records.append(_record(family, i, j, n, d, float(loss), dataset))
    failed = _record("eqv2", 9, 9, 1e5, 1e4, 1.0)
    failed.update(checkpoint="broken/failed.pt", status="failed", error="diverged at step 3",
                  metrics={})
    nan = _record("transformer", 8, 8, 1e5, 1e4, float("nan"))  # written as NaN in the JSON
    nan.update(checkpoint="broken/nan.pt")
    records[3]["metrics"]["md_drift"] = None  # one downstream value missing
    return records + [failed, nan]


def write_results(path, records) -> None:
    path.write_text(json.dumps({"format": "mlip-scaling-results/1", "records": records}))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaling")
    write_results(root / "scaling_results.json", synthetic_records())
    html = build_report(root, root / "report", n_perm=200, quiet=True, n_boot=20)
    return root, html


def test_report_writes_every_output(report_dir):
    root, html = report_dir
    out = root / "report"
    for metric in ("test_loss", "relax_rmsd", "md_drift"):
        assert (out / f"{metric}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (out / f"{metric}.svg").read_text()
    for stem in ("frontier_test_loss", "quality_test_loss"):
        assert (out / f"{stem}.png").stat().st_size > 1000
    page = html.read_text()
    assert page.count("<svg") >= 5 and "src='http" not in page  # self-contained
    for name in ("fits.json", "fits.csv", "points.csv"):
        assert (out / name).stat().st_size > 0


def test_planted_joint_exponents_and_positive_power_laws(report_dir):
    root, _ = report_dir
    payload = json.loads((root / "report" / "fits.json").read_text())
    fits = payload["fits"]
    for family, (a, b) in FAMILIES.items():
        joint = next(r for r in fits if (r["family"], r["metric"], r["axis"])
                     == (family, "test_loss", "joint"))
        assert joint["status"] == "ok"
        assert joint["params"]["a"] == pytest.approx(a, rel=0.15)
        assert joint["params"]["b"] == pytest.approx(b, rel=0.15)
        for axis in ("data", "params", "compute"):
            power = next(r for r in fits if (r["family"], r["metric"], r["axis"], r["form"])
                         == (family, "test_loss", axis, "power"))
            assert power["status"] == "ok" and 0 < power["ci"]["beta"][0] < power["params"][
                "beta"] < power["ci"]["beta"][1]
            floor = next(r for r in fits if (r["family"], r["metric"], r["axis"], r["form"])
                         == (family, "test_loss", axis, "floor"))
            if axis != "compute":  # 4 sizes: too few for 3 parameters
                assert floor["status"] == "insufficient" and floor["params"] == {}
    with open(root / "report" / "fits.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(fits) and {"beta", "beta_lo", "beta_hi", "a", "b"} <= set(rows[0])


def test_failed_and_nan_records_are_excluded_and_listed(report_dir):
    root, html = report_dir
    payload = json.loads((root / "report" / "fits.json").read_text())
    reasons = {e["checkpoint"]: e["reason"] for e in payload["excluded"]}
    assert "diverged" in reasons["broken/failed.pt"]
    assert "test_loss" in reasons["broken/nan.pt"]
    assert "md_drift" in reasons["transformer/n0_d3.pt"]
    page = html.read_text()
    assert "broken/failed.pt" in page and "broken/nan.pt" in page
    fits = payload["fits"]
    # the excluded runs' sizes (1e5 params) appear in no fit
    assert all(1e5 not in r["x"] for r in fits)
    with open(root / "report" / "points.csv") as fh:
        points = {r["checkpoint"]: r for r in csv.DictReader(fh)}
    assert len(points) == 34 and points["broken/failed.pt"]["excluded"].startswith("failed")


def test_mixed_datasets_refused_unless_allowed(tmp_path):
    records = synthetic_records(mixed=True)
    with pytest.raises(ConfigError, match="different datasets.*abc.*def|def.*abc"):
        split_records(records)
    usable, _ = split_records(records, allow_mixed=True)
    assert len(usable) == 32


def test_too_few_runs_give_status_not_exponent():
    records = [r for r in synthetic_records() if r["checkpoint"].endswith(("n3_d2.pt",
                                                                          "n3_d3.pt"))]
    rows = fit_records(split_records(records)[0], metrics=["test_loss"])
    assert rows and all(r["status"] == "insufficient" and r["params"] == {} for r in rows)


def test_unreadable_or_foreign_results_are_refused(tmp_path):
    (tmp_path / "scaling_results.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        load_records(tmp_path)
    (tmp_path / "scaling_results.json").write_text(json.dumps({"format": "x/9", "records": []}))
    with pytest.raises(DataError, match="unknown results format"):
        load_records(tmp_path)
    write_results(tmp_path / "scaling_results.json", [])
    with pytest.raises(DataError, match="no evaluation records"):
        build_report(tmp_path, tmp_path / "r", quiet=True)
    with pytest.raises(DataError, match="no evaluation results"):
        load_records(tmp_path / "missing")


def test_axis_slice_with_most_sizes_wins_over_a_lone_larger_run():
    """A hand-made folder: 3 model sizes at 800 structures plus one model at 9000."""
    recs = [_record("transformer", i, 0, n, 800, 10 * n**-0.4) for i, n in
            enumerate([1e3, 4e3, 1.6e4])] + [_record("transformer", 9, 1, 2e3, 9000, 1.0)]
    x, y = axis_points(recs, "params", "test_loss")
    assert list(x) == [1e3, 4e3, 1.6e4]
    np.testing.assert_allclose(y, 10 * x**-0.4)
    x, _ = axis_points(recs, "data", "test_loss")  # every model has one set: the largest model
    assert list(x) == [800]


def test_slice_is_recorded_and_a_missing_value_does_not_move_it(report_dir):
    root, html = report_dir
    fits = json.loads((root / "report" / "fits.json").read_text())["fits"]
    for row in fits:
        assert row["slice"]["rule"] and "p_trend" in row and "indicative" in row
    drift = next(r for r in fits if (r["family"], r["metric"], r["axis"], r["form"])
                 == ("transformer", "md_drift", "data", "power"))
    loss = next(r for r in fits if (r["family"], r["metric"], r["axis"], r["form"])
                == ("transformer", "test_loss", "data", "power"))
    # md_drift is missing at (smallest model, largest set): the slice stays the largest model
    assert drift["slice"]["value"] == loss["slice"]["value"] == 64000
    assert drift["slice"]["rule"] == "largest complete slice" and len(drift["x"]) == 4
    assert "largest complete slice" in html.read_text()
    with open(root / "report" / "fits.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"slice_fixed", "slice_value", "slice_rule", "p_trend", "p_floor", "p_perm",
            "indicative"} <= set(rows[0])


def test_missing_value_in_the_fitted_slice_drops_the_point_only():
    recs = [_record("eqv2", i, j, n, d, 5 / n**0.3 + 2 / d**0.3) for i, n in
            enumerate([1e3, 4e3, 1.6e4]) for j, d in enumerate([100, 400, 1600, 6400])]
    recs[-1]["metrics"]["relax_rmsd"] = None  # largest model, largest set
    x, _ = axis_points(recs, "data", "relax_rmsd")
    assert list(x) == [100, 400, 1600]  # still the largest model, one point fewer
    rows = fit_records(recs, metrics=["relax_rmsd"], axes=["data"], n_perm=50)
    assert rows[0]["slice"]["value"] == 1.6e4
    assert rows[0]["slice"]["missing"] == ["eqv2/n2_d3.pt"]


def test_compute_frontier_runs_are_chosen_by_test_loss():
    rng = np.random.default_rng(3)
    recs = [_record("eqv2", i, j, n, d, float(0.01 + 5 / n**0.4 + 2 / d**0.4))
            for i, n in enumerate([1e3, 4e3, 1.6e4, 6.4e4])
            for j, d in enumerate([100, 400, 1600, 6400])]
    for rec in recs:  # a downstream metric that ignores compute, lowest off the frontier
        rec["metrics"]["relax_rmsd"] = float(rng.lognormal(0, 0.3))
    x_loss, _ = axis_points(recs, "compute", "test_loss")
    x_rmsd, _ = axis_points(recs, "compute", "relax_rmsd")
    np.testing.assert_allclose(x_rmsd, x_loss)
    rows = fit_records(recs, metrics=["relax_rmsd"], axes=["compute"], n_perm=200)
    power = next(r for r in rows if r["form"] == "power")
    assert power["status"] == "no-trend" and power["p_perm"] >= 0.05
    assert power["slice"]["rule"] == "frontier runs chosen by test loss"
