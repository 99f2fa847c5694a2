"""From evaluation records to fitted exponents, plots, HTML, JSON and CSV.

Axes: ``data`` (n_train, at the largest model of each family), ``params`` (n_params, at
the largest training set), ``compute`` (flops, the running-minimum frontier of all runs),
plus the joint law over (n_params, n_train).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path

import numpy as np

from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.io_utils import atomic_write_text
from mlip_scaling.scaling.fit import FitResult, fit_joint, fit_law, frontier

__all__ = ["load_records", "split_records", "fit_records", "build_report", "METRICS", "AXES"]

RESULTS_NAME = "scaling_results.json"
METRICS = ("test_loss", "energy_mae", "force_mae", "stress_mae", "relax_energy_error",
           "relax_rmsd", "relax_failure_rate", "md_drift", "rdf_error")
AXES = {"data": "n_train", "params": "n_params", "compute": "flops"}


def load_records(source) -> list[dict]:
    """Records from a results file, a directory holding one, or a list of records."""
    if isinstance(source, list):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / RESULTS_NAME
    if not path.is_file():
        raise DataError(f"{path}: no evaluation results (run `mlip-scaling evaluate DIR`)")
    try:
        payload = json.loads(path.read_text())
        return list(payload["records"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable results file ({exc})") from None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def split_records(records: list[dict], allow_mixed: bool = False) -> tuple[list, list]:
    """(usable, excluded-with-reason); refuses mixed datasets unless ``allow_mixed``."""
    usable, excluded = [], []
    for rec in records:
        metrics = rec.get("metrics") or {}
        if rec.get("status") != "ok":
            excluded.append((rec, f"failed: {rec.get('error') or 'unknown error'}"))
        elif not _finite(metrics.get("test_loss")):
            excluded.append((rec, "test_loss is NaN or missing"))
        else:
            usable.append(rec)
    datasets = sorted({str(r.get("dataset_hash")) for r in usable})
    if len(datasets) > 1 and not allow_mixed:
        names = sorted({f"{r.get('dataset_name')} ({str(r.get('dataset_hash'))[:12]})"
                        for r in usable})
        raise ConfigError(f"checkpoints were trained on different datasets: {', '.join(names)}"
                          " (pass --allow-mixed to fit them together)")
    return usable, excluded


def _axis_points(recs: list[dict], axis: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    key = AXES[axis]
    pts = [(r[key], r["metrics"][metric]) for r in recs
           if _finite(r.get(key)) and _finite((r.get("metrics") or {}).get(metric))]
    if not pts:
        return np.zeros(0), np.zeros(0)
    x, y = map(np.asarray, zip(*pts))
    if axis == "compute":
        return frontier(x, y)
    other = AXES["params" if axis == "data" else "data"]
    top = max(r[other] for r in recs if _finite(r.get(other)))
    pts = [(r[key], r["metrics"][metric]) for r in recs if r.get(other) == top
           and _finite(r.get(key)) and _finite(r["metrics"].get(metric))]
    x, y = map(np.asarray, zip(*pts)) if pts else (np.zeros(0), np.zeros(0))
    return np.asarray(x, float), np.asarray(y, float)


def fit_records(records: list[dict], metrics=METRICS, forms=("power", "floor"),
                n_boot: int = 100) -> list[dict]:
    """Fits per family, metric, axis and form (plus the joint law) as JSON-able rows."""
    rows = []
    for family in sorted({r.get("family", "?") for r in records}):
        recs = [r for r in records if r.get("family", "?") == family]
        for metric in metrics:
            if not any(_finite((r.get("metrics") or {}).get(metric)) for r in recs):
                continue
            for axis in AXES:
                x, y = _axis_points(recs, axis, metric)
                for form in forms:
                    fit = fit_law(form, x, y, n_boot=n_boot)
                    rows.append(_row(family, metric, axis, fit, x, y))
            pts = [(r["n_params"], r["n_train"], r["metrics"][metric]) for r in recs
                   if _finite(r["metrics"].get(metric))]
            if pts:
                n, d, y = map(np.asarray, zip(*pts))
                rows.append(_row(family, metric, "joint", fit_joint(n, d, y, n_boot=20),
                                 n, y))
    return rows


def _row(family, metric, axis, fit: FitResult, x, y) -> dict:
    return {"family": family, "metric": metric, "axis": axis, **fit.to_dict(),
            "x": [float(v) for v in x], "y": [float(v) for v in y]}


def _table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Scaling exponents (95 % bootstrap intervals)")
    for col in ("family", "metric", "axis", "form", "exponent", "95 % CI", "R²", "extrap.",
                "status"):
        table.add_column(col)
    for r in rows:
        key = {"power": "beta", "floor": "b"}.get(r["form"])
        exp_ = f"{r['params'][key]:.3f}" if key and r["params"] else (
            f"a={r['params']['a']:.2f} b={r['params']['b']:.2f}" if r["params"] else "—")
        ci = f"[{r['ci'][key][0]:.3f}, {r['ci'][key][1]:.3f}]" if key and r["ci"] else ""
        table.add_row(r["family"], r["metric"], r["axis"], r["form"], exp_, ci,
                      f"{r['r2']:.3f}" if r["r2"] is not None else "",
                      f"{100 * r['extrapolation_error']:.1f} %"
                      if r["extrapolation_error"] is not None else "",
                      r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}")
    Console(width=160).print(table)


def _write_tables(rows: list[dict], records: list[dict], out: Path) -> None:
    atomic_write_text(json.dumps(rows, indent=1), out / "fits.json")
    with open(out / "fits.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["family", "metric", "axis", "form", "status", "reason", "params", "ci",
                    "r2", "extrapolation_error", "n_points"])
        for r in rows:
            w.writerow([r["family"], r["metric"], r["axis"], r["form"], r["status"],
                        r["reason"], json.dumps(r["params"]), json.dumps(r["ci"]), r["r2"],
                        r["extrapolation_error"], r["n_points"]])
    with open(out / "points.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["checkpoint", "family", "model", "n_params", "n_train", "flops", "status",
                    *METRICS])
        for r in records:
            m = r.get("metrics") or {}
            w.writerow([r.get("checkpoint"), r.get("family"), r.get("model"), r.get("n_params"),
                        r.get("n_train"), r.get("flops"), r.get("status"),
                        *[m.get(k) for k in METRICS]])


def build_report(source, out_dir, allow_mixed: bool = False, n_boot: int = 100,
                 quiet: bool = False) -> Path:
    """Fit every metric and axis, write plots (PNG+SVG), HTML, JSON and CSV to ``out_dir``."""
    from mlip_scaling.scaling.plots import plot_metric

    records = load_records(source)
    if not records:
        raise DataError(f"{source}: no evaluation records")
    usable, excluded = split_records(records, allow_mixed)
    if not usable:
        raise DataError(f"{source}: no usable records ({len(excluded)} excluded)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = fit_records(usable, n_boot=n_boot)
    figures = []
    for metric in METRICS:
        if any(r["metric"] == metric for r in rows):
            figures.append((metric, plot_metric(rows, usable, metric, out)))
    _write_tables(rows, records, out)
    _write_html(rows, figures, excluded, out)
    if not quiet:
        _table([r for r in rows if r["form"] == "power" or r["axis"] == "joint"])
        for rec, why in excluded:
            print(f"excluded {rec.get('checkpoint')}: {why}")
        print(f"report written to {out / 'report.html'}")
    return out / "report.html"


def _write_html(rows, figures, excluded, out: Path) -> None:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>mlip-scaling report"
             "</title><style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
             "</style></head><body><h1>Scaling report</h1>"]
    for metric, png in figures:
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(f"<h2>{html.escape(metric)}</h2><img src='data:image/png;base64,{data}'"
                     " style='max-width:100%'>")
    parts.append("<h2>Fits</h2><table><tr><th>family</th><th>metric</th><th>axis</th>"
                 "<th>form</th><th>params</th><th>95 % CI</th><th>status</th></tr>")
    for r in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            r["family"], r["metric"], r["axis"], r["form"],
            {k: round(v, 4) for k, v in r["params"].items()},
            {k: [round(a, 4) for a in v] for k, v in r["ci"].items()},
            r["status"] + (f": {r['reason']}" if r["reason"] else ""))) + "</tr>")
    parts.append("</table><h2>Excluded runs</h2><ul>")
    parts += [f"<li>{html.escape(str(rec.get('checkpoint')))}: {html.escape(why)}</li>"
              for rec, why in excluded] or ["<li>none</li>"]
    parts.append("</ul></body></html>")
    atomic_write_text("\n".join(parts), out / "report.html")
