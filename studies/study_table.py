"""Turn a study's report into the docs table, a learning-curve figure and a comparison draft.

    python studies/study_table.py runs/study --doc docs/study.md \
        --figure docs/study_learning_curves.png

Reads ``STUDY/report/fits.json`` (the fits), ``STUDY/runs/scaling_results.json`` (the runs'
convergence) and the model files' training wall times; writes a Markdown block (exponents
per family with 95 % intervals, trend p, convergence; downstream exponents; wall times; a
comparison paragraph with the published results) between the markers ``<!-- study:begin
-->`` and ``<!-- study:end -->`` of ``--doc`` (or prints it), and one figure with a panel
per family (test force MAE against training-set size, every seed, the fitted law).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from mlip_scaling.errors import DataError, cli_entry
from mlip_scaling.io_utils import atomic_write_text

#: families in the order of the symmetry they build in, with the words for it
SYMMETRY = {"transformer-seed": "none (raw coordinates, direct forces)",
            "transformer-vec": "none (lab-frame neighbour directions)",
            "transformer": "invariant (distances)",
            "transformer-m": "invariant (distances, three-body moments)",
            "eqv2-l1": "equivariant, l ≤ 1", "eqv2-l3": "equivariant, l ≤ 3"}
METRIC = "force_mae"
DOWNSTREAM = ("relax_energy_error", "relax_rmsd", "md_drift", "rdf_error")
#: rank of the symmetry built in (families of one rank are not ordered among themselves)
RANK = {"transformer-seed": 0, "transformer-vec": 0, "transformer": 1, "transformer-m": 1,
        "eqv2-l1": 2, "eqv2-l3": 3}
AXES = ("data", "params", "compute")
RESOLVED_HALF_WIDTH = 0.07  # the bar: 95 % half-width of the data exponent
BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"


def _fits(study: Path) -> list[dict]:
    path = study / "report" / "fits.json"
    try:
        return json.loads(path.read_text())["fits"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: no readable fits ({type(exc).__name__}); run the study "
                        "first") from None


def _records(study: Path) -> list[dict]:
    path = study / "runs" / "scaling_results.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: no readable results ({type(exc).__name__})") from None
    return data["records"] if isinstance(data, dict) else data


def families(rows: list[dict]) -> list[str]:
    """Families of the fits, in symmetry order (unknown ones last, by name)."""
    names = {r["family"] for r in rows}
    order = [f for f in SYMMETRY if f in names]
    return order + sorted(names - set(order))


def _row(rows: list[dict], family: str, metric: str, axis: str) -> dict | None:
    for r in rows:
        if (r["family"], r["metric"], r["axis"], r["form"]) == (family, metric, axis, "power"):
            return r
    return None


def exponent(row: dict | None) -> tuple[float, float, float] | None:
    """(beta, lo, hi) of a fitted power law, else None."""
    if row is None or row["status"] != "ok" or "beta" not in row["params"]:
        return None
    lo, hi = row["ci"].get("beta", [math.nan, math.nan])
    return row["params"]["beta"], lo, hi


def resolved(row: dict | None) -> bool:
    """The issue's bar: a fitted exponent, trend p < 0.05, 95 % half-width <= 0.07."""
    got = exponent(row)
    return got is not None and row["p_trend"] < 0.05 and (got[2] - got[1]) / 2 <= (
        RESOLVED_HALF_WIDTH)


def cell(row: dict | None) -> str:
    """'0.31 [0.24, 0.38], p 2e-05' or why there is no exponent."""
    if row is None:
        return "not fitted"
    got = exponent(row)
    p = f"p {row['p_trend']:.2g}" if row.get("p_trend") is not None else ""
    if got is None:
        why = "rises" if "does not decrease" in (row.get("reason") or "") else row["status"]
        return f"— ({why}{', ' + p if p else ''})"
    beta, lo, hi = got
    flags = " (indicative)" if row.get("indicative") else ""
    flags += " ✔" if resolved(row) else ""
    return f"{beta:.3f} [{lo:.3f}, {hi:.3f}], {p}{flags}"


def convergence(records: list[dict], family: str) -> str:
    """'17/18 converged' over the family's runs."""
    mine = [r for r in records if r.get("family") == family and r.get("status") == "ok"]
    said = [r for r in mine if r.get("converged") is not None]
    if not said:
        return "not recorded"
    return f"{sum(bool(r['converged']) for r in said)}/{len(said)} converged"


def main_table(rows: list[dict], records: list[dict], walls: dict[str, float]) -> list[str]:
    """Markdown lines of the exponent table of the test force MAE."""
    out = ["| family | symmetry | data exponent | parameter exponent | compute exponent | "
           "runs | training time (sum over runs) |", "|---|---|---|---|---|---|---|"]
    for fam in families(rows):
        cells = [cell(_row(rows, fam, METRIC, axis)) for axis in AXES]
        wall = f"{walls[fam] / 60:.1f} min" if fam in walls else "n/a"
        out.append(f"| {fam} | {SYMMETRY.get(fam, '?')} | " + " | ".join(cells)
                   + f" | {convergence(records, fam)} | {wall} |")
    return out


def downstream_table(rows: list[dict]) -> list[str]:
    """Markdown lines of the data exponents of the downstream metrics."""
    present = [m for m in DOWNSTREAM if any(r["metric"] == m for r in rows)]
    if not present:
        return ["No downstream metric was evaluated."]
    out = ["| family | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for fam in families(rows):
        out.append(f"| {fam} | " + " | ".join(cell(_row(rows, fam, m, "data"))
                                              for m in present) + " |")
    return out


def ordering(rows: list[dict]) -> str:
    """Whether the data exponents of the force MAE grow with the symmetry built in."""
    fitted = [(f, exponent(_row(rows, f, METRIC, "data"))) for f in families(rows)
              if f in SYMMETRY]
    fitted = [(f, e) for f, e in fitted if e is not None]
    if len(fitted) < 2:
        return "fewer than two families have a data exponent: the ordering is not tested"
    ranks = sorted({RANK[f] for f, _ in fitted})
    pairs = [(a, b) for lo, hi in zip(ranks, ranks[1:]) for a in fitted if RANK[a[0]] == lo
             for b in fitted if RANK[b[0]] == hi]
    up = [b[1][0] >= a[1][0] for a, b in pairs]
    apart = [b[1][1] > a[1][2] or a[1][1] > b[1][2] for a, b in pairs]  # disjoint intervals
    names = " < ".join("/".join(f for f, _ in fitted if RANK[f] == r) for r in ranks)
    if len(ranks) < 2:
        return f"only {names} (one symmetry level) has data exponents: the ordering is not tested"
    if all(up) and all(apart):
        return f"the ordering {names} holds, every step outside the 95 % intervals"
    if any(not u and s for u, s in zip(up, apart)):
        bad = [f"{b[0]} below {a[0]}" for (a, b), u, s in zip(pairs, up, apart)
               if not u and s]
        return f"the ordering {names} is contradicted ({', '.join(bad)}, intervals disjoint)"
    word = "point estimates follow" if all(up) else "point estimates do not follow"
    return f"the {word} the ordering {names}, but the intervals overlap: not resolved"


def level(row: dict | None, n: float) -> float | None:
    """The fitted power law's force MAE at ``n`` training structures (eV/Å)."""
    if exponent(row) is None:
        return None
    return row["params"]["alpha"] * n ** -row["params"]["beta"]


def paragraph(rows: list[dict]) -> list[str]:
    """The comparison with the three published studies, from the fitted numbers alone."""
    fams = families(rows)
    data_rows = {f: _row(rows, f, METRIC, "data") for f in fams}
    data = {f: exponent(r) for f, r in data_rows.items()}
    listed = "; ".join(f"{f} {e[0]:.2f} [{e[1]:.2f}, {e[2]:.2f}]" if e else f"{f} none"
                       for f, e in data.items())
    near = [f for f, e in data.items() if e and e[1] <= 0.26 <= e[2]]
    n_max = max((max(r["x"]) for r in data_rows.values() if r and r.get("x")), default=None)
    levels = [f"{f} {level(r, n_max) * 1e3:.0f} meV/Å" for f, r in data_rows.items()
              if n_max and level(r, n_max) is not None]
    compute = [f for f in fams if exponent(_row(rows, f, METRIC, "compute")) is not None]
    efficiency = (f"the fitted force MAE at {n_max:.0f} structures is {'; '.join(levels)}"
                  if levels else "no family has a fitted data law to compare levels")
    return [
        f"**Against published results.** Data exponents of the test force MAE: {listed}. "
        f"Ngo & Ravanbakhsh 2025 (arXiv 2510.09768) find exponents ordered unconstrained < "
        f"low-order < high-order equivariant; here {ordering(rows)}. Brehmer et al. 2024 "
        "(arXiv 2410.23179) find that equivariance improves data efficiency and that compute "
        f"scaling is a power law for both kinds: here {efficiency}, and a compute exponent "
        f"is fitted for {', '.join(compute) or 'no family'}. Frey et al. 2023 report a data "
        "exponent of about 0.26 for equivariant potentials; the interval of "
        f"{', '.join(near) or 'no family'} contains 0.26."]


def readme_block(study: Path, image: str | None, doc: str) -> str:
    """The short block for the front page: the exponent table, the ordering, the figure."""
    rows, records = _fits(study), _records(study)
    lines = [BEGIN, "", *main_table(rows, records, training_walls(study)), "",
             f"Test force MAE, 95 % intervals, trend p; ✔ = resolved (half-width ≤ "
             f"{RESOLVED_HALF_WIDTH}, p < 0.05). Ordering by symmetry: {ordering(rows)}. "
             f"Downstream exponents, wall times and the comparison with published results: "
             f"[study]({doc}).", "",
             *([f"![learning curves per family]({image})", ""] if image else []), END]
    return "\n".join(lines) + "\n"


def training_walls(study: Path) -> dict[str, float]:
    """Training wall time (s) summed per family over the study's model files (else the
    ``runs/train_walls.json`` of a merged study, studies/merge_results.py)."""
    from mlip_scaling.checkpoint import CheckpointError, load_checkpoint

    walls: dict[str, float] = {}
    saved = study / "runs" / "train_walls.json"
    if saved.is_file() and not any((study / "runs").glob("*/*.pt")):
        return {str(k): float(v) for k, v in json.loads(saved.read_text()).items()}
    for path in sorted((study / "runs").glob("*/*.pt")):
        if path.name == "last.pt":
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError:
            continue
        fam, wall = ckpt["model"]["family"], ckpt.get("train", {}).get("wall_time_s")
        if isinstance(wall, int | float):
            walls[fam] = walls.get(fam, 0.0) + float(wall)
    return walls


def block(study: Path, image: str | None = None) -> str:
    """The Markdown block of the study's results (``image``: the figure's link)."""
    rows, records = _fits(study), _records(study)
    lines = [BEGIN, "", f"Test force MAE (eV/Å): power-law exponents with 95 % intervals "
             f"and trend p; ✔ = resolved (half-width ≤ {RESOLVED_HALF_WIDTH}, p < 0.05).", "",
             *main_table(rows, records, training_walls(study)), "",
             "Data exponents of the downstream metrics (largest model of each family):", "",
             *downstream_table(rows), "", *paragraph(rows), "",
             *([f"![learning curves per family]({image})", ""] if image else []), END]
    return "\n".join(lines) + "\n"


def replace_block(text: str, new: str, where: str) -> str:
    """``text`` with the block between the markers replaced by ``new``."""
    if BEGIN not in text or END not in text:
        raise DataError(f"{where}: no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    return head + new.rstrip("\n") + rest.split(END, 1)[1]


def figure(study: Path, path: Path) -> Path:
    """One panel per family: force MAE vs training-set size, seeds (open: not converged)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows, records = _fits(study), _records(study)
    fams = families(rows)
    fig, axes = plt.subplots(1, len(fams), figsize=(3.2 * len(fams), 3.0), sharey=True,
                             squeeze=False)
    for ax, fam in zip(axes[0], fams):
        row = _row(rows, fam, METRIC, "data")
        chosen = [r for r in records if r.get("family") == fam and row is not None
                  and r.get(row["slice"]["fixed"]) == row["slice"]["value"]
                  and isinstance((r.get("metrics") or {}).get(METRIC), float)]
        for conv, face in ((True, "C0"), (False, "none"), (None, "C7")):
            pts = [(r["n_train"], r["metrics"][METRIC]) for r in chosen
                   if r.get("converged") == conv]
            if pts:
                ax.scatter(*zip(*pts), facecolors=face, edgecolors="C0", s=18)
        got = exponent(row)
        if got is not None:
            x = np.geomspace(min(row["x"]), max(row["x"]), 50)
            ax.plot(x, row["params"]["alpha"] * x ** -got[0], "C3-",
                    label=f"β = {got[0]:.2f} [{got[1]:.2f}, {got[2]:.2f}]")
            ax.legend(fontsize=7)
        ax.set(xscale="log", yscale="log", xlabel="training structures", title=fam)
    axes[0][0].set_ylabel("test force MAE (eV/Å)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="the study folder (runs/ and report/)")
    parser.add_argument("--doc", type=Path, default=None, help="Markdown file whose study "
                        "block is replaced (default: print the block)")
    parser.add_argument("--figure", type=Path, default=None, help="learning-curve PNG")
    parser.add_argument("--readme", type=Path, default=None, help="front page whose study "
                        "block gets the short table (needs --doc)")
    args = parser.parse_args(argv)
    image = None
    if args.figure is not None:
        print(f"wrote {figure(args.study, args.figure)}")
        base = args.doc.parent if args.doc is not None else Path.cwd()
        image = os.path.relpath(args.figure, base)
    text = block(args.study, image)
    if args.doc is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(replace_block(args.doc.read_text(), text, str(args.doc)), args.doc)
        print(f"wrote the study table to {args.doc}")
    if args.readme is not None and args.doc is not None:
        base = args.readme.parent
        short = readme_block(args.study, args.figure and os.path.relpath(args.figure, base),
                             os.path.relpath(args.doc, base))
        atomic_write_text(replace_block(args.readme.read_text(), short, str(args.readme)),
                          args.readme)
        print(f"wrote the short study table to {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
