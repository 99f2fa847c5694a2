"""examples/demo_summary.py: the README's demo table comes from a report's fits.json."""

from __future__ import annotations

import json

import pytest
from scripts import load_script


@pytest.fixture(scope="module")
def summary():
    return load_script("examples/demo_summary.py")


def _fit(metric, axis, beta=None, status="ok", p=0.001, indicative=False):
    return {"family": "transformer", "metric": metric, "axis": axis, "form": "power",
            "status": status, "params": {"beta": beta} if beta else {},
            "ci": {"beta": [beta - 0.1, beta + 0.1]} if beta else {}, "p_trend": p,
            "p_perm": None, "indicative": indicative,
            "slice": {"fixed": "n_params", "value": 6400, "rule": "largest complete slice"}
            if axis == "data" else {"fixed": None, "value": None, "rule": "all runs"}}


def test_readme_block_is_replaced_with_the_measured_table(summary, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    fits = [_fit("test_loss", "data", 0.5), _fit("test_loss", "params", 0.25, indicative=True),
            _fit("test_loss", "compute", status="no-trend", p=0.4),
            {**_fit("test_loss", "data", 0.9), "form": "floor"}]
    (report / "fits.json").write_text(json.dumps({"format": "x", "fits": fits}))
    (report / "test_loss.png").write_bytes(b"png")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- demo:start -->\nold table\n<!-- demo:end -->\nrest\n")
    assert summary.main([str(report), "--doc", str(readme),
                         "--figure", str(tmp_path / "docs" / "demo.png")]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert ("| test loss | 0.50 [0.40, 0.60] p=0.001 | 0.25 [0.15, 0.35] p=0.001 (indicative) "
            "| no exponent (no-trend); p=0.4 |") in text
    assert "data β: n_params = 6.4e+03 (largest complete slice)" in text
    assert "indicative*: fitted on <= 4 sizes" in text
    assert "0.90" not in text  # only the pure power law is tabulated
    assert "](docs/demo.png)" in text and (tmp_path / "docs" / "demo.png").read_bytes() == b"png"


def test_missing_markers_or_fits_are_refused(summary, tmp_path):
    with pytest.raises(SystemExit, match="fits.json"):
        summary.main([str(tmp_path)])
    (tmp_path / "fits.json").write_text('{"fits": []}')
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="demo:start"):
        summary.main([str(tmp_path), "--doc", str(readme)])
    assert readme.read_text() == "no markers\n"


def test_cells_show_the_deciding_p_an_increase_and_borderline(summary):
    bent = {**_fit("test_loss", "data", 0.5), "p_curv": 0.004}
    assert summary.cell(bent) == "0.50 [0.40, 0.60] p=0.001 (bends: curvature p=0.004)"
    assert "bends" not in summary.cell({**bent, "p_curv": 0.2})
    up = _fit("rdf_error", "data", status="no-trend", p=0.024)
    assert summary.cell(up) == "no exponent: the error increases; p=0.024 (borderline)"
    flat = {**_fit("test_loss", "compute", status="no-trend", p=0.098), "p_perm": 0.031}
    assert summary.cell(flat) == "no exponent (no-trend); p=0.098 (borderline), null p=0.031"
    near = _fit("test_loss", "params", 0.4, p=0.012)
    assert summary.cell(near) == "0.40 [0.30, 0.50] p=0.012 (borderline)"
    assert "borderline*: 0.01 < p < 0.1" in summary.table([near])
