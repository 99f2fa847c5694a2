"""Log-log plots of scaling laws (matplotlib Agg): points, fitted laws and 95 % bands.

``plot_metric``: one figure per metric, one panel per axis (data, parameters, compute
frontier), families overlaid. ``plot_frontier``: every run's (FLOPs, test loss) with the
running-minimum frontier and its law. ``plot_quality``: relative residuals of the fitted
laws. All write PNG and SVG and return the two paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlip_scaling.scaling.fit import predict

__all__ = ["plot_metric", "plot_frontier", "plot_quality", "law_band"]

_LABELS = {"data": "training structures N_data", "params": "parameters N_params",
           "compute": "training compute (FLOP)"}
_EXPONENT = {"power": "beta", "floor": "b"}


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
    key = _EXPONENT[row["form"]]
    label = (f"{row['family']}: β={row['params'][key]:.3f}" if row["form"] == "power"
             else f"{row['family']}: E+A·N^-b, b={row['params'][key]:.3f}")
    label += " (indicative)" if row.get("indicative") else ""
    ax.plot(xs, predict(row["form"], row["params"], xs), style, color=color, label=label)
    band = law_band(row, xs)
    if band is not None:
        ax.fill_between(xs, *band, color=color, alpha=0.15 if style == "-" else 0.07)


def _save(fig, out: Path, stem: str) -> tuple[Path, Path]:
    png, svg = out / f"{stem}.png", out / f"{stem}.svg"
    fig.savefig(png, dpi=110)
    fig.savefig(svg)
    return png, svg


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # labelled decades only: no overlapping text
    if ax.dataLim.y1 > 0:  # all-zero values (e.g. no failed relaxation) stay on a linear axis
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _colors(plt, families: list[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {f: cycle[i % len(cycle)] for i, f in enumerate(families)}


def plot_metric(rows: list[dict], metric: str, out: Path) -> tuple[Path, Path]:
    """Figure of ``metric``: panels data / params / compute; points of each family's fit
    rows, the pure power law (solid, band) and the floor form when fitted (dashed)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    families = sorted({r["family"] for r in rows if r["metric"] == metric})
    colors = _colors(plt, families)
    for ax, axis in zip(axes, ("data", "params", "compute")):
        for family in families:
            sel = {r["form"]: r for r in rows
                   if (r["family"], r["metric"], r["axis"]) == (family, metric, axis)}
            power = sel.get("power")
            if not power or not power["x"]:
                continue
            color = colors[family]
            ax.scatter(power["x"], power["y"], color=color, s=18,
                       label=None if power["status"] == "ok" else f"{family} ({power['status']})")
            if power["status"] == "ok":
                _draw_law(ax, power, color)
            if sel.get("floor", {}).get("status") == "ok":
                _draw_law(ax, sel["floor"], color, "--")
        _finish(ax, _LABELS[axis], metric,
                f"{metric} vs {axis}" + (" (frontier)" if axis == "compute" else ""))
    fig.tight_layout()
    paths = _save(fig, out, metric)
    plt.close(fig)
    return paths


def plot_frontier(records: list[dict], rows: list[dict], out: Path,
                  metric: str = "test_loss") -> tuple[Path, Path]:
    """All runs' (FLOPs, ``metric``) per family, the frontier and its law (floor form when
    identifiable, else the pure power law)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    families = sorted({r["family"] for r in rows if r["metric"] == metric})
    colors = _colors(plt, families)
    for family in families:
        pts = [(r.get("flops"), (r.get("metrics") or {}).get(metric)) for r in records
               if r.get("family", "?") == family]
        pts = [(c, v) for c, v in pts if isinstance(c, (int, float)) and
               isinstance(v, (int, float)) and c > 0 and v > 0 and np.isfinite(c * v)]
        color = colors[family]
        if pts:
            c, v = zip(*pts)
            ax.scatter(c, v, color=color, s=12, alpha=0.35)
        sel = {r["form"]: r for r in rows
               if (r["family"], r["metric"], r["axis"]) == (family, metric, "compute")}
        power = sel.get("power")
        if not power or not power["x"]:
            continue
        ax.plot(power["x"], power["y"], "o", color=color, ms=5, label=f"{family} frontier")
        law = sel["floor"] if sel.get("floor", {}).get("status") == "ok" else power
        if law["status"] == "ok":
            _draw_law(ax, law, color)
    _finish(ax, _LABELS["compute"], metric, f"compute frontier of {metric}")
    fig.tight_layout()
    paths = _save(fig, out, f"frontier_{metric}")
    plt.close(fig)
    return paths


def plot_quality(rows: list[dict], metric: str, out: Path) -> tuple[Path, Path]:
    """Fit quality of ``metric``: relative residuals y/ŷ − 1 of every fitted power law and
    joint law against the axis variable, with R² and the leave-largest-out error."""
    plt = _pyplot()
    axes_names = ("data", "params", "compute", "joint")
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6), sharey=True)
    families = sorted({r["family"] for r in rows if r["metric"] == metric})
    colors = _colors(plt, families)
    for ax, axis in zip(axes, axes_names):
        form = "joint" if axis == "joint" else "power"
        for row in rows:
            if (row["metric"], row["axis"], row["form"], row["status"]) != (
                    metric, axis, form, "ok"):
                continue
            x = np.asarray(row["x"])
            d = np.asarray(row["d"]) if "d" in row else None
            resid = np.asarray(row["y"]) / predict(form, row["params"], x, d) - 1.0
            extrap = row["extrapolation_error"]
            ax.plot(x, resid, "o", color=colors[row["family"]], ms=4,
                    label=f"{row['family']}: R²={row['r2']:.3f}" + (
                        f", left-out {100 * extrap:.1f} %" if extrap is not None else ""))
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(_LABELS.get(axis, "parameters N_params (joint law)"))
        ax.set_title("joint law L(N, D)" if axis == "joint" else f"power law vs {axis}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_ylabel(f"{metric}: observed / fitted − 1")
    fig.tight_layout()
    paths = _save(fig, out, f"quality_{metric}")
    plt.close(fig)
    return paths
