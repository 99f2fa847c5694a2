"""Which runs each fit uses: axis slices, the compute frontier and the joint grid.

* ``data`` axis: n_train at one model size; ``params`` axis: n_params at one training-set
  size. The slice is chosen from the runs alone (every usable run has a test loss), never
  from the metric being fitted, so a missing downstream value drops that point only and
  never moves the slice. Rule: the largest complete slice (the largest fixed value whose
  runs cover every size seen on the axis); when no slice is complete, the slice with the
  most sizes, the largest among equals, and the row says so.
* ``compute``: the frontier runs chosen by test loss only (running minimum over FLOPs);
  every metric is then read on those runs.
* ``joint``: all runs.
"""

from __future__ import annotations

import math

import numpy as np

from mlip_scaling.scaling.frontier import frontier_indices
from mlip_scaling.scaling.metrics import SELECTION

__all__ = ["AXES", "choose_slice", "slice_points", "slice_points_se", "standard_error",
           "axis_points", "finite"]

AXES = {"data": "n_train", "params": "n_params", "compute": "flops"}
_OTHER = {"data": "n_params", "params": "n_train"}


def finite(value) -> bool:
    """A real, finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def _metric(rec: dict, metric: str):
    return (rec.get("metrics") or {}).get(metric)


def choose_slice(recs: list[dict], axis: str) -> dict:
    """{"fixed": other key, "value": its value, "rule": text} of a data/params axis."""
    key, other = AXES[axis], _OTHER[axis]
    groups: dict[float, set] = {}
    for r in recs:
        if finite(r.get(other)) and finite(r.get(key)) and finite(_metric(r, SELECTION)):
            groups.setdefault(r[other], set()).add(r[key])
    if not groups:
        return {"fixed": other, "value": None, "rule": "no runs"}
    sizes = set().union(*groups.values())
    complete = [v for v, g in groups.items() if g == sizes]
    if complete:
        return {"fixed": other, "value": max(complete), "rule": "largest complete slice"}
    top = max(groups, key=lambda v: (len(groups[v]), v))
    return {"fixed": other, "value": top, "rule": f"no complete slice: most sizes "
            f"({len(groups[top])} of {len(sizes)}), largest among equals"}


def slice_points(recs: list[dict], axis: str, metric: str) -> tuple[np.ndarray, np.ndarray,
                                                                      dict]:
    """(x [n], metric [n], slice description) of one family on one axis, sorted by x;
    the description lists the slice's runs whose metric is missing."""
    x, y, _, desc = slice_points_se(recs, axis, metric)
    return x, y, desc


def standard_error(rec: dict, metric: str) -> float:
    """The run's recorded standard error of ``metric`` (``<metric>_se``), NaN if none."""
    value = _metric(rec, f"{metric}_se")
    return float(value) if finite(value) and value > 0 else float("nan")


def slice_points_se(recs: list[dict], axis: str, metric: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    """:func:`slice_points` with the standard errors [n] of the metric (None unless every
    point has one)."""
    key = AXES[axis]
    if axis == "compute":
        runs = [r for r in recs if finite(r.get(key)) and finite(_metric(r, SELECTION))]
        idx = frontier_indices([r[key] for r in runs], [_metric(r, SELECTION) for r in runs])
        chosen = [runs[i] for i in idx]
        desc = {"fixed": None, "value": None, "rule": "frontier runs chosen by test loss"}
    else:
        desc = choose_slice(recs, axis)
        chosen = [r for r in recs if desc["value"] is not None
                  and r.get(desc["fixed"]) == desc["value"] and finite(r.get(key))]
    missing = [r for r in chosen if not finite(_metric(r, metric))]
    desc["missing"] = sorted(str(r.get("checkpoint")) for r in missing)
    pts = sorted((r[key], _metric(r, metric), standard_error(r, metric)) for r in chosen
                 if finite(_metric(r, metric)))
    x = np.asarray([p[0] for p in pts], float)
    y = np.asarray([p[1] for p in pts], float)
    se = np.asarray([p[2] for p in pts], float)
    return x, y, se if len(se) and np.isfinite(se).all() else None, desc


def axis_points(recs: list[dict], axis: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, metric) of one family on one axis (see the module docstring)."""
    x, y, _ = slice_points(recs, axis, metric)
    return x, y
