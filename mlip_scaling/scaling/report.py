"""From evaluation records to fitted exponents, plots, HTML, JSON and CSV.

Points per axis and family (``slices``): ``data`` = n_train at one model size, ``params`` =
n_params at one training-set size, both the largest complete slice, chosen from the runs
(never from the fitted metric) and recorded in every row; ``compute`` = the frontier runs
chosen by test loss, every metric read on them, with a permutation null; plus the joint law
over (n_params, n_train). Failed records and records whose test loss is NaN/missing are
excluded and listed; a NaN downstream metric drops that point from that metric's fits only
(the slice stays) and is listed too.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.io_utils import atomic_path, atomic_write_text
from mlip_scaling.scaling.allocation import allocation_from_records, allocation_lines
from mlip_scaling.scaling.fit import FitResult, fit_joint, fit_law
from mlip_scaling.scaling.frontier import frontier_fits
from mlip_scaling.scaling.metrics import FITTED, REGISTRY, SELECTION
from mlip_scaling.scaling.metrics import metric as metric_info
from mlip_scaling.scaling.planner import row_detectable
from mlip_scaling.scaling.report_page import (
    ALLOCATION_COLUMNS,
    FIT_COLUMNS,
    allocation_section,
    fit_table,
    missing_lines,
    model_metrics,
    model_table,
    page,
)
from mlip_scaling.scaling.results import check_records, read_results
from mlip_scaling.scaling.slices import AXES, finite, slice_points_se, standard_error

__all__ = ["load_records", "split_records", "fit_records", "build_report", "write_report",
           "print_table", "print_models", "exit_status", "allocations", "print_allocations",
           "RESULTS_NAME"]

RESULTS_NAME = "scaling_results.json"
FITS_FORMAT = "mlip-scaling-fits/1"


def load_records(source) -> list[dict]:
    """Records from a results file, a directory holding one, or a list of records."""
    if isinstance(source, list):
        return check_records(source, "records")
    path = Path(source)
    if path.is_dir():
        path = path / RESULTS_NAME
    if not path.is_file():
        raise DataError(f"{path}: no evaluation results (run `mlip-scaling evaluate DIR`)")
    return read_results(path)


_finite = finite


def split_records(records: list[dict], allow_mixed: bool = False
                  ) -> tuple[list[dict], list[tuple[dict, str]]]:
    """(usable records, [(excluded record, reason)]).

    Raises ConfigError naming the datasets when usable records come from different
    datasets (by ``dataset_hash``) unless ``allow_mixed``.
    """
    usable, excluded = [], []
    for rec in records:
        metrics = rec.get("metrics") or {}
        if rec.get("status") != "ok":
            excluded.append((rec, f"failed: {rec.get('error') or 'unknown error'}"))
        elif not _finite(metrics.get(SELECTION)):
            excluded.append((rec, f"{SELECTION} is NaN or missing"))
        else:
            usable.append(rec)
    datasets = {str(r.get("dataset_hash")) for r in usable}
    if len(datasets) > 1 and not allow_mixed:
        names = sorted({f"{r.get('dataset_name')} ({str(r.get('dataset_hash'))[:12]})"
                        for r in usable})
        raise ConfigError(f"checkpoints were trained on different datasets: {', '.join(names)}"
                          " (pass --allow-mixed to fit them together)")
    for rec in usable:
        bad = [k for k, v in (rec.get("metrics") or {}).items()
               if k in FITTED and v is not None and not _finite(v)]
        bad += [k for k, v in (rec.get("metrics") or {}).items()
                if k in FITTED and v is None and _present_elsewhere(k, usable)]
        if bad:
            excluded.append((rec, f"{', '.join(sorted(bad))} NaN or missing: left out of "
                                  "those fits only"))
    return usable, excluded


def _present_elsewhere(metric: str, records: list[dict]) -> bool:
    return any(_finite((r.get("metrics") or {}).get(metric)) for r in records)


def fit_records(records: list[dict], metrics=None, axes=None,
                forms=("power", "floor", "broken"),
                n_perm: int = 1000) -> list[dict]:
    """Fits per family, metric, axis and form as JSON-able rows (FitResult fields plus
    family, metric, axis, the fitted slice and the points x, y).

    ``metrics`` defaults to every known metric present in the records, ``axes`` to
    data, params, compute and joint (the joint law over n_params and n_train); ``n_perm``
    draws of the compute frontier's permutation null.
    """
    metrics = metrics or [m for m in FITTED if _present_elsewhere(m, records)]
    axes = list(axes or [*AXES, "joint"])
    rows = []
    for family in sorted({str(r.get("family") or "?") for r in records}):
        recs = [r for r in records if str(r.get("family") or "?") == family]
        for metric in metrics:
            if not _present_elsewhere(metric, recs):
                continue
            for axis in (a for a in axes if a in AXES):
                x, y, se, desc = slice_points_se(recs, axis, metric)
                fits = (_compute_fits(recs, metric, forms, n_perm) if axis == "compute"
                        else [fit_law(form, x, y, se=se) for form in forms])
                note = _convergence(recs, desc) if axis != "compute" else None
                rows += [{**_row(family, metric, axis, fit, x, y, desc), "convergence": note}
                         for fit in fits]
            if "joint" in axes:
                rows.append(_joint_row(family, metric, recs))
    for row in rows:
        row["mde"] = row_detectable(row)
    return rows


def _convergence(recs: list[dict], desc: dict) -> str | None:
    """Whether the slice's runs converged (early stopping): None when no run says."""
    said = [r["converged"] for r in recs if desc.get("value") is not None
            and r.get(desc["fixed"]) == desc["value"] and r.get("converged") is not None]
    if not said:
        return None
    still = len(said) - sum(said)
    return ("all runs converged" if not still else
            f"{still} of {len(said)} runs still improving at their cap")


def allocations(records: list[dict], n_boot: int = 200) -> dict[str, dict]:
    """Compute-optimal allocation of the test loss per family (``allocation``)."""
    return {family: allocation_from_records(
        [r for r in records if str(r.get("family") or "?") == family], SELECTION,
        n_boot=n_boot) for family in sorted({str(r.get("family") or "?") for r in records})}


def print_allocations(found: dict[str, dict]) -> None:
    """Terminal table of the compute-optimal allocations (or why each is missing)."""
    for family, result in found.items():
        head, cells = allocation_lines(result)
        if cells:
            _rich_table(f"{family}: compute-optimal allocation of the test loss",
                        ALLOCATION_COLUMNS, cells)
        print(f"{family}: {head}")


def _compute_fits(recs: list[dict], metric: str, forms, n_perm: int) -> list[FitResult]:
    runs = [r for r in recs if _finite(r.get("flops"))]
    flops = [r["flops"] for r in runs]
    select = [r["metrics"][SELECTION] for r in runs]
    values = None if metric == SELECTION else [
        v if _finite(v := (r.get("metrics") or {}).get(metric)) else np.nan for r in runs]
    sizes = [r.get("n_params") for r in runs], [r.get("n_train") for r in runs]
    usable = all(_finite(v) for v in (*sizes[0], *sizes[1]))
    return frontier_fits(flops, select, values, forms, n_perm,
                         runs=(np.asarray(sizes[0], float), np.asarray(sizes[1], float))
                         if usable else None)[2]


def _joint_row(family: str, metric: str, recs: list[dict]) -> dict:
    pts = [(r["n_params"], r["n_train"], r["metrics"][metric], standard_error(r, metric))
           for r in recs if _finite(r.get("n_params")) and _finite(r.get("n_train"))
           and _finite(r["metrics"].get(metric))]
    n, d, y, se = (np.asarray(v, float) for v in zip(*pts)) if pts else (np.zeros(0),) * 4
    se = se if len(se) and np.isfinite(se).all() else None
    row = _row(family, metric, "joint", fit_joint(n, d, y, se=se), n, y,
               {"fixed": None, "value": None, "rule": "all runs", "missing": []})
    row["d"] = [float(v) for v in d]
    return row


def _row(family: str, metric: str, axis: str, fit: FitResult, x, y, desc: dict) -> dict:
    row = {"family": family, "metric": metric, "axis": axis, **fit.to_dict(),
           "slice": desc, "x": [float(v) for v in x], "y": [float(v) for v in y]}
    if not REGISTRY[metric].error and not fit.ok:
        row["reason"] += f" ({metric} is not an error: a decreasing law is not expected)"
    return row


def _rich_table(title: str, header, rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in header:
        table.add_column(col, overflow="fold")
    for cells in rows:
        table.add_row(*cells)
    Console(width=200).print(table)


def print_table(rows: list[dict], title: str = "Scaling exponents (95 % intervals: t for the "
                "power law, profile likelihood otherwise; exponents only where the trend "
                "test gives p < 0.05)", verbose: bool = False) -> None:
    """Rich terminal table of the fitted exponents; the fits that lack runs are one line per
    family (each its own row with ``verbose``)."""
    shown = rows if verbose else [r for r in rows if r["status"] != "insufficient"]
    if shown:
        _rich_table(title, FIT_COLUMNS, fit_table(shown))
    if not verbose:
        for line in missing_lines(rows):
            print(line)


def print_models(records: list[dict], excluded: list[tuple[dict, str]],
                 transpose_up_to: int = 8) -> None:
    """Rich terminal table of every run's size, data, compute and measured metrics: one
    column per run (a row per quantity) for up to ``transpose_up_to`` runs, else one row
    per run."""
    header, rows = model_table(records, excluded)
    if not any(r[-1] for r in rows):  # no run excluded: no note column
        header, rows = header[:-1], [r[:-1] for r in rows]
    if len(rows) <= transpose_up_to:
        columns = [list(c) for c in zip(header, *rows)]
        header, rows = ["", *columns[1][1:]], [columns[0], *columns[2:]]  # models on top
    _rich_table("Models (measured values)", header, rows)


def exit_status(rows: list[dict]) -> int:
    """Exit status of ``fit`` and ``report``: 0 when at least one law was fitted, else 1."""
    return 0 if any(r["status"] == "ok" for r in rows) else 1


def _write_csv(path: Path, header: list[str], lines: list[list]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(lines)


_EXTRA_CSV = ["n_cells", "weighting", "dof", "resid_sd", "p_curv", "p_extrap", "p_break",
              "flags", "se_beta", "se_a", "se_b", "se_b1", "se_b2"]


def _csv_extra(row: dict, key: str):
    if key == "flags":
        return ";".join(row.get("flags") or [])
    if key.startswith("se_"):
        return (row.get("se") or {}).get(key[3:])
    return row.get(key)


def _write_tables(rows, records, excluded, out: Path) -> None:
    measured = model_metrics(records, oracle=True)
    payload = {"format": FITS_FORMAT, "fits": rows,
               "excluded": [{"checkpoint": rec.get("checkpoint"), "reason": why}
                            for rec, why in excluded],
               "not_fitted": {m: metric_info(m).not_fitted for m in measured
                              if not metric_info(m).fitted},
               "n_records": len(records)}
    atomic_write_text(json.dumps(payload, indent=1) + "\n", out / "fits.json")
    keys = sorted({k for r in rows for k in r["params"]})
    _write_csv(out / "fits.csv",
               ["family", "metric", "axis", "slice_fixed", "slice_value", "slice_rule", "form",
                "status", "reason", "n_points", "n_sizes", "indicative", "interval", "p_trend",
                "p_floor", "p_perm", "r2", "extrapolation_error", "convergence", *keys,
                *[f"{k}_{e}" for k in keys for e in ("lo", "hi")], *_EXTRA_CSV],
               [[r["family"], r["metric"], r["axis"], r["slice"].get("fixed"),
                 r["slice"].get("value"), r["slice"].get("rule"), r["form"], r["status"],
                 r["reason"], r["n_points"], r["n_sizes"], r["indicative"], r["interval"],
                 r["p_trend"], r["p_floor"], r["p_perm"], r["r2"], r["extrapolation_error"],
                 r.get("convergence"), *[r["params"].get(k) for k in keys],
                 *[r["ci"].get(k, [None, None])[i] for k in keys for i in (0, 1)],
                 *[_csv_extra(r, k) for k in _EXTRA_CSV]]
                for r in rows])
    why = {id(rec): reason for rec, reason in excluded}
    names = list(dict.fromkeys([*FITTED, *measured]))
    _write_csv(out / "points.csv",
               ["checkpoint", "family", "model", "n_params", "n_train", "flops",
                "dataset_name", "status", "excluded", *names],
               [[r.get("checkpoint"), r.get("family"), r.get("model"), r.get("n_params"),
                 r.get("n_train"), r.get("flops"), r.get("dataset_name"), r.get("status"),
                 why.get(id(r), ""), *[(r.get("metrics") or {}).get(k) for k in names]]
                for r in records])


def write_report(source, out_dir, allow_mixed: bool = False, n_perm: int = 1000,
                 quiet: bool = False, verbose: bool = False, n_boot: int = 200
                 ) -> tuple[Path, list[dict]]:
    """Fit every metric and axis; write PNG+SVG plots (figures with nothing to draw are
    skipped), report.html, fits.json, fits.csv, points.csv and allocation.json (the
    compute-optimal allocation, ``n_boot`` bootstrap refits) to ``out_dir``.
    Returns (HTML path, fit rows); prints the tables unless ``quiet``."""
    from mlip_scaling.scaling.plots import plot_frontier, plot_metric, plot_quality

    records = load_records(source)
    if not records:
        raise DataError(f"{source}: no evaluation records")
    usable, excluded = split_records(records, allow_mixed)
    if not usable:
        raise DataError(f"{source}: no usable records ({len(excluded)} excluded: "
                        f"{excluded[0][1] if excluded else ''})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = fit_records(usable, n_perm=n_perm)
    metrics = [m for m in FITTED if any(r["metric"] == m for r in rows)]
    drawn = [(metric_info(m).heading(), plot_metric(rows, m, out)) for m in metrics]
    drawn.insert(min(1, len(drawn)), (f"compute frontier: {metric_info(SELECTION).label}",
                                      plot_frontier(usable, rows, out)))
    drawn.insert(min(2, len(drawn)), (f"fit quality: {metric_info(SELECTION).label}",
                                      plot_quality(rows, SELECTION, out)))
    figures = [(title, *paths) for title, paths in drawn if paths is not None]
    _write_tables(rows, records, excluded, out)
    found = allocations(usable, n_boot)
    atomic_write_text(json.dumps(found, indent=1) + "\n", out / "allocation.json")
    html_path = out / "report.html"
    atomic_write_text(page(records, usable, rows, excluded, figures,
                           allocation_section(found)), html_path)
    if not quiet:
        print_models(records, excluded)
        print_table(rows if verbose else
                    [r for r in rows if r["form"] == "power" or r["axis"] == "joint"],
                    verbose=verbose)
        print_allocations(found)
        for rec, why in excluded:
            print(f"excluded {rec.get('checkpoint')}: {why}")
        print(f"report written to {html_path}")
    return html_path, rows


def build_report(source, out_dir, allow_mixed: bool = False, n_perm: int = 1000,
                 quiet: bool = False, n_boot: int = 200) -> Path:
    """:func:`write_report` returning the HTML path only."""
    return write_report(source, out_dir, allow_mixed, n_perm, quiet, n_boot=n_boot)[0]
