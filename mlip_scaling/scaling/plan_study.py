"""Study planning from a pilot: the noise of each metric read from evaluation records, the
minimal detectable exponent on a planned grid, and the grid that resolves an exponent.

The records are those of ``mlip-scaling evaluate`` (``scaling_results.json``). Per metric
and family the pilot's runs on one axis (the largest complete slice, as the report fits)
give the scatter about a power law; a metric with a recorded standard error
(``<metric>_se``, e.g. relaxation and MD metrics) gives its evaluation noise, referred to
the largest count of the pilot (relaxations ``k_relax`` or MD steps ``md_steps``) by
1/√count. See :mod:`mlip_scaling.scaling.planner` for the noise model and the method.
"""

from __future__ import annotations

import numpy as np

from mlip_scaling.errors import DataError
from mlip_scaling.scaling.metrics import FITTED, REGISTRY
from mlip_scaling.scaling.planner import (
    TARGET_RATE,
    Grid,
    Noise,
    estimate_noise,
    grid_summary,
    plan_grid,
)
from mlip_scaling.scaling.slices import AXES, choose_slice, finite

__all__ = ["COUNT_SETTING", "noise_from_records", "pilot_sizes", "plan_study", "study_lines"]

#: evaluation -> (grid count it scales with, evaluation setting holding the pilot's count)
COUNT_SETTING = {"relax": ("relaxations", "k_relax"), "relax_fixed": ("relaxations", "k_relax"),
                 "md": ("md_steps", "md_steps")}


def _slice_records(records: list[dict], axis: str) -> list[dict]:
    desc = choose_slice(records, axis)
    return [r for r in records if desc["value"] is not None
            and r.get(desc["fixed"]) == desc["value"] and finite(r.get(AXES[axis]))]


def pilot_sizes(records: list[dict], axis: str) -> tuple[float, ...]:
    """Distinct sizes of the pilot's slice on ``axis`` (data or params)."""
    return tuple(sorted({float(r[AXES[axis]]) for r in _slice_records(records, axis)}))


def _metric_noise(runs: list[dict], metric: str, axis: str) -> Noise:
    kind, setting = COUNT_SETTING.get(REGISTRY[metric].produced_by, ("", ""))
    pts = [(r[AXES[axis]], r["metrics"][metric], (r.get("metrics") or {}).get(f"{metric}_se"),
            (r.get("settings") or {}).get(setting)) for r in runs
           if finite((r.get("metrics") or {}).get(metric))]
    x, y = (np.array([p[i] for p in pts], float) for i in (0, 1))
    counts = np.array([p[3] if finite(p[3]) and p[3] > 0 else np.nan for p in pts], float)
    se = np.array([p[2] if finite(p[2]) else np.nan for p in pts], float)
    ref = int(np.nanmax(counts)) if kind and np.isfinite(counts).any() else 1
    rel = se / y * np.sqrt(counts / ref) if kind else None
    return estimate_noise(metric, x, y, rel, ref, kind)


def noise_from_records(records: list[dict], axis: str = "params",
                       metrics=None) -> dict[str, list[Noise]]:
    """{family: [Noise per metric]} from usable pilot records; metrics with fewer than 3
    sizes on the axis are left out (their Noise is not made)."""
    if axis not in ("data", "params"):
        raise DataError(f"pilot axis must be data or params, got {axis!r}")
    out: dict[str, list[Noise]] = {}
    for family in sorted({str(r.get("family") or "?") for r in records}):
        runs = _slice_records([r for r in records if str(r.get("family") or "?") == family],
                              axis)
        names = metrics or [m for m in FITTED if any(
            finite((r.get("metrics") or {}).get(m)) for r in runs)]
        found = []
        for m in names:
            try:
                found.append(_metric_noise(runs, m, axis))
            except ValueError:
                continue
        out[family] = found
    return out


def plan_study(noises: list[Noise], grid: Grid, beta: float | None = None,
               half_width: float | None = None, target: float = TARGET_RATE) -> list[dict]:
    """Per metric: its noise, the MDE on ``grid`` and, with β and the half-width, the
    probability that ``grid`` resolves β and the cheapest grid over the same size range
    that does with probability >= ``target`` (``plan_grid``)."""
    rows = []
    for noise in noises:
        row = {"noise": noise, **grid_summary(noise, grid, beta, half_width)}
        if beta is not None and half_width is not None:
            row["needed"] = plan_grid(noise, beta, half_width, min(grid.sizes),
                                      max(grid.sizes), target)
        rows.append(row)
    return rows


def _noise_text(n: Noise) -> str:
    parts = [f"shared {n.sigma_shared:.3f}", f"run {n.sigma_run:.3f}"]
    if n.sigma_eval > 0:
        parts.append(f"eval {n.sigma_eval:.3f} at {n.count_ref} {n.count_kind}")
    return ", ".join(parts)


def _grid_text(g: Grid, kind: str) -> str:
    text = f"{len(g.sizes)} sizes x {g.seeds} seed(s)"
    return text + (f", {g.count(kind, 0)} {kind}/model" if kind else "")


def study_lines(rows: list[dict], beta: float | None = None) -> tuple[list[str],
                                                                       list[list[str]]]:
    """(header, cells) of the planning table for the terminal."""
    header = ["metric", "noise (SD of log)", "MDE (power 0.8)"]
    if beta is not None:
        header += [f"P(resolve {beta:g})", "grid needed", "P (needed)"]
    cells = []
    for r in rows:
        line = [r["metric"], _noise_text(r["noise"]), f"{r['mde']:.3g}"]
        if "needed" in r:
            need = r["needed"]
            line += [f"{100 * r['p_resolve']:.0f} %",
                     _grid_text(need["grid"], r["count_kind"]) if need["status"] == "ok"
                     else need["reason"], f"{100 * need['p_resolve']:.0f} %"]
        cells.append(line)
    return header, cells
