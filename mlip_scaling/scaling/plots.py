"""Log-log plots of scaling laws: points, fitted laws and bootstrap bands per axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlip_scaling.scaling.fit import predict

__all__ = ["plot_metric"]

_LABELS = {"data": "training structures N_data", "params": "parameters N_params",
           "compute": "training compute (FLOP)"}


def _band(row: dict, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95 % band of a power law: the exponent's interval, pivoting at the data's centre
    in log N (where the amplitude and exponent estimates decorrelate)."""
    centre = float(np.exp(np.mean(np.log(row["x"]))))
    y_centre = predict("power", row["params"], np.array([centre]))[0]
    curves = [y_centre * (xs / centre) ** -beta for beta in row["ci"]["beta"]]
    return np.minimum(*curves), np.maximum(*curves)


def plot_metric(rows: list[dict], records: list[dict], metric: str, out: Path) -> Path:
    """One figure per metric, one panel per axis, families overlaid; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    families = sorted({r["family"] for r in rows if r["metric"] == metric})
    colors = dict(zip(families, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, axis in zip(axes, ("data", "params", "compute")):
        for family in families:
            match = [r for r in rows if (r["family"], r["metric"], r["axis"], r["form"])
                     == (family, metric, axis, "power")]
            if not match or not match[0]["x"]:
                continue
            row, color = match[0], colors[family]
            ax.scatter(row["x"], row["y"], color=color, s=18, label=family)
            if row["status"] == "ok":
                xs = np.logspace(np.log10(min(row["x"])), np.log10(max(row["x"])), 60)
                beta = row["params"]["beta"]
                ax.plot(xs, predict("power", row["params"], xs), color=color,
                        label=f"{family}: β={beta:.3f}")
                low, high = _band(row, xs)
                ax.fill_between(xs, low, high, color=color, alpha=0.15)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(_LABELS[axis])
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs {axis}" + (" (frontier)" if axis == "compute" else ""))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    png = out / f"{metric}.png"
    fig.savefig(png, dpi=110)
    fig.savefig(out / f"{metric}.svg")
    plt.close(fig)
    return png
