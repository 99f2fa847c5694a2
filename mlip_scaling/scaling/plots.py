"""Log-log plots of scaling laws (matplotlib Agg): points, fitted laws and 95 % bands.

``plot_metric``: one figure per metric, one panel per axis that has points (data,
parameters, compute frontier), families overlaid. ``plot_frontier``: every run's (FLOPs,
test loss) with the running-minimum frontier and its law. ``plot_quality``: relative
residuals of the fitted laws. All write PNG and SVG and return the two paths, or None (and
write nothing) when there is nothing to draw. Axis labels carry units from the metric
registry; log axes spanning less than ~2 decades get labelled ticks inside the span.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlip_scaling.scaling.fit import ALPHA, predict
from mlip_scaling.scaling.metrics import SELECTION, axis_label
from mlip_scaling.scaling.metrics import metric as metric_info

__all__ = ["plot_metric", "plot_frontier", "plot_quality", "law_band", "log_ticks"]

_MANTISSAS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), tuple(float(m) for m in range(1, 10)))
Paths = tuple[Path, Path] | None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def law_band(row: dict, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise 95 % band of a fitted law at ``xs``, interpolated in log-log from the fit's
    own band (power law: t-band of the log-log line; floor form: envelope of the curves
    with b across its profile-likelihood interval). None when the fit has no band."""
    band = row.get("band") or {}
    if not band.get("x"):
        return None
    lx = np.log(np.asarray(band["x"]))
    return tuple(np.exp(np.interp(np.log(xs), lx, np.log(np.asarray(band[k]))))
                 for k in ("lo", "hi"))


def _draw_law(ax, row: dict, color, style: str = "-") -> None:
    xs = np.logspace(np.log10(min(row["x"])), np.log10(max(row["x"])), 60)
    p = row["params"]
    if row["form"] == "broken":
        label = f"{row['family']}: broken, b1={p['b1']:.3f}, b2={p['b2']:.3f}"
    elif row["form"] == "power":
        label = f"{row['family']}: β={p['beta']:.3f}" + (
            " (curved!)" if "curvature" in (row.get("flags") or []) else "")
    else:
        label = f"{row['family']}: E+A·N^-b, b={p['b']:.3f}"
    label += f" (indicative: {row.get('n_sizes')} sizes)" if row.get("indicative") else ""
    ax.plot(xs, predict(row["form"], row["params"], xs), style, color=color, label=label)
    band = law_band(row, xs)
    if band is not None:
        ax.fill_between(xs, *band, color=color, alpha=0.15 if style == "-" else 0.07)


def _save(fig, out: Path, stem: str) -> tuple[Path, Path]:
    """Lay out ``fig``, write ``out/stem.png`` and ``.svg``, close it; the two paths."""
    import matplotlib.pyplot as plt

    png, svg = out / f"{stem}.png", out / f"{stem}.svg"
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    fig.savefig(svg)
    plt.close(fig)
    return png, svg


def log_ticks(lo: float, hi: float, at_least: int = 3, gap: float = 0.12) -> list[float]:
    """Tick values for a log axis over [lo, hi] (0 < lo <= hi): the sparsest of 1, 1-3,
    1-2-5 and 1..9 per decade giving ``at_least`` ticks inside the span, none closer than
    ``gap`` of the span (log scale); else ``at_least + 1`` values spread geometrically
    across it, rounded to the fewest significant digits (2 to 4) that keep them apart."""
    span = np.log10(hi / lo)
    for mantissas in _MANTISSAS:
        ticks = [float(f"{m * 10.0**e:.6g}") for e in range(int(np.floor(np.log10(lo))),
                                            int(np.ceil(np.log10(hi))) + 1)
                 for m in mantissas if lo <= m * 10.0**e <= hi]
        if len(ticks) >= at_least:
            if np.diff(np.log10(ticks)).min() >= gap * span:
                return ticks
            break
    spread = np.geomspace(lo, hi, at_least + 1) if hi > lo else np.array([lo])
    ways = [np.ceil] + [np.round] * (len(spread) - 2) + [np.floor]  # ends stay inside
    for digits in (2, 3, 4):  # the fewest digits that keep the values apart
        ticks = sorted({_round_sig(v, digits, way) for v, way in zip(spread, ways)})
        if len(ticks) == len(spread):
            break
    return ticks


def _round_sig(value: float, digits: int, way) -> float:
    scale = 10.0 ** (np.floor(np.log10(value)) - digits + 1)
    return float(f"{way(value / scale) * scale:.6g}")


def _tick_text(value: float, _pos=None) -> str:
    return f"{value:g}" if 1e-3 <= abs(value) < 1e5 else f"{value:.3g}"


def _readable_log_axis(axis, lo: float, hi: float) -> None:
    """Label ticks inside the span when it covers less than two decades (the default
    locator would label at most one decade mark, or none)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if not (lo > 0 and np.isfinite(hi)) or np.log10(hi / lo) >= 2:
        axis.set_minor_formatter(NullFormatter())  # labelled decades only
        return
    axis.set_ticks(log_ticks(lo, hi))
    axis.set_major_formatter(FuncFormatter(_tick_text))
    axis.set_minor_formatter(NullFormatter())


def _nothing(out: Path, stem: str) -> None:
    """No figure: remove the PNG and SVG an earlier report may have left under ``stem``."""
    for suffix in (".png", ".svg"):
        (out / f"{stem}{suffix}").unlink(missing_ok=True)


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    if ax.dataLim.y0 > 0:  # zero values (e.g. no failed relaxation) stay on a linear axis
        ax.set_yscale("log")
        _readable_log_axis(ax.yaxis, ax.dataLim.y0, ax.dataLim.y1)
    _readable_log_axis(ax.xaxis, ax.dataLim.x0, ax.dataLim.x1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _colors(plt, families: list[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {f: cycle[i % len(cycle)] for i, f in enumerate(families)}


def _sel(rows: list[dict], family: str, metric: str, axis: str) -> dict[str, dict]:
    return {r["form"]: r for r in rows
            if (r["family"], r["metric"], r["axis"]) == (family, metric, axis)}


def _positive_sizes(row: dict) -> int:
    return len({x for x, y in zip(row["x"], row["y"]) if x > 0 and y > 0})


def _no_law(row: dict) -> str:
    """Why a row's points carry no law, in a few words for the legend."""
    if row["status"] == "insufficient":
        n = row['n_sizes']
        return f"no law (only {n} size{'' if n == 1 else 's'})"
    if row["status"] == "no-trend" and row.get("p_trend") is not None:
        if row["p_trend"] < ALPHA:  # a significant trend that is not a decrease
            return f"increases (p={row['p_trend']:.2g})"
        return f"no significant trend (p={row['p_trend']:.2g})"
    return f"no law ({row['status']})"


def _panel(ax, rows: list[dict], metric: str, axis: str, colors: dict[str, str]) -> None:
    for family, color in colors.items():
        sel = _sel(rows, family, metric, axis)
        power = sel.get("power")
        if not power or not power["x"]:
            continue
        fitted = power["status"] == "ok"
        ax.scatter(power["x"], power["y"], color=color, s=18,
                   label=None if fitted else f"{family}: {_no_law(power)}")
        if fitted:
            _draw_law(ax, power, color)
        if sel.get("floor", {}).get("status") == "ok":
            _draw_law(ax, sel["floor"], color, "--")
        if sel.get("broken", {}).get("status") == "ok":
            _draw_law(ax, sel["broken"], color, ":")


def plot_metric(rows: list[dict], metric: str, out: Path) -> Paths:
    """Figure of ``metric``: a panel for each axis with points (data / params / compute);
    points of each family's fit rows, the pure power law (solid, band) and the floor form
    when fitted (dashed). None when no axis has two sizes with positive values to draw."""
    drawn = [a for a in ("data", "params", "compute")
             if any(r["metric"] == metric and r["axis"] == a and _positive_sizes(r) >= 2
                    for r in rows)]
    if not drawn:
        return _nothing(out, metric)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(drawn), figsize=(5 * len(drawn), 4.2), squeeze=False)
    colors = _colors(plt, sorted({r["family"] for r in rows if r["metric"] == metric}))
    info = metric_info(metric)
    for ax, axis in zip(axes[0], drawn):
        _panel(ax, rows, metric, axis, colors)
        _finish(ax, axis_label(axis), info.heading(),
                f"{info.label} vs {axis}" + (" (frontier)" if axis == "compute" else ""))
    return _save(fig, out, metric)


def _run_points(records: list[dict], family: str, metric: str) -> list[tuple[float, float]]:
    pts = [(r.get("flops"), (r.get("metrics") or {}).get(metric)) for r in records
           if r.get("family", "?") == family]
    return [(c, v) for c, v in pts if isinstance(c, (int, float)) and
            isinstance(v, (int, float)) and c > 0 and v > 0 and np.isfinite(c * v)]


def plot_frontier(records: list[dict], rows: list[dict], out: Path,
                  metric: str = SELECTION) -> Paths:
    """All runs' (FLOPs, ``metric``) per family, the frontier and its law (floor form when
    identifiable, else the pure power law). None when no run has both values."""
    families = sorted({r["family"] for r in rows if r["metric"] == metric})
    if not any(_run_points(records, f, metric) for f in families):
        return _nothing(out, f"frontier_{metric}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for family, color in _colors(plt, families).items():
        pts = _run_points(records, family, metric)
        if pts:
            c, v = zip(*pts)
            ax.scatter(c, v, color=color, s=12, alpha=0.35)
        sel = _sel(rows, family, metric, "compute")
        power = sel.get("power")
        if not power or not power["x"]:
            continue
        ax.plot(power["x"], power["y"], "o", color=color, ms=5, label=f"{family} frontier")
        law = sel["floor"] if sel.get("floor", {}).get("status") == "ok" else power
        if law["status"] == "ok":
            _draw_law(ax, law, color)
    info = metric_info(metric)
    _finish(ax, axis_label("compute"), info.heading(), f"compute frontier of {info.label}")
    return _save(fig, out, f"frontier_{metric}")


def _quality_label(row: dict) -> str:
    extrap = row["extrapolation_error"]
    return f"{row['family']}: R²={row['r2']:.3f}" + (
        f", left-out {100 * extrap:.1f} %" if extrap is not None else "")


def plot_quality(rows: list[dict], metric: str, out: Path) -> Paths:
    """Fit quality of ``metric``: relative residuals y/ŷ − 1 of every fitted power law and
    joint law against the axis variable, with R² and the leave-largest-out error; one panel
    per axis with a fitted law, None when no law was fitted."""
    fitted = [r for r in rows if r["metric"] == metric and r["status"] == "ok"
              and r["form"] == ("joint" if r["axis"] == "joint" else "power")]
    drawn = [a for a in ("data", "params", "compute", "joint")
             if any(r["axis"] == a for r in fitted)]
    if not drawn:
        return _nothing(out, f"quality_{metric}")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.4 * len(drawn), 3.6), sharey=True,
                             squeeze=False)
    colors = _colors(plt, sorted({r["family"] for r in rows if r["metric"] == metric}))
    for ax, axis in zip(axes[0], drawn):
        for row in (r for r in fitted if r["axis"] == axis):
            x = np.asarray(row["x"])
            d = np.asarray(row["d"]) if "d" in row else None
            resid = np.asarray(row["y"]) / predict(row["form"], row["params"], x, d) - 1.0
            ax.plot(x, resid, "o", color=colors[row["family"]], ms=4, label=_quality_label(row))
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xscale("log")
        _readable_log_axis(ax.xaxis, ax.dataLim.x0, ax.dataLim.x1)
        ax.set_xlabel(axis_label("params") + " (joint law)" if axis == "joint"
                      else axis_label(axis))
        ax.set_title("joint law L(N, D)" if axis == "joint" else f"power law vs {axis}")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{metric_info(metric).label}: observed / fitted − 1")
    return _save(fig, out, f"quality_{metric}")
