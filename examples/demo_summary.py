"""Markdown exponent table of a ``mlip-scaling report`` folder, optionally written into a page.

    python examples/demo_summary.py runs/demo/report                    # print the table
    python examples/demo_summary.py runs/demo/report --doc docs/benchmarks.md \
        --figure docs/demo_test_loss.png

With ``--doc`` the text between ``<!-- demo:start -->`` and ``<!-- demo:end -->`` is
replaced by the table (and the figure, copied from the report's ``test_loss.png``), so the
page always shows the numbers of the last ``make demo``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from mlip_scaling.scaling.fit import ALPHA
from mlip_scaling.scaling.metrics import REGISTRY, SELECTION
from mlip_scaling.scaling.report_page import is_borderline

#: the metrics tabulated (``summary`` in the package's metric registry), with label and unit
METRICS = {m.name: m.heading() for m in REGISTRY.values() if m.summary}
AXES = {"data": "data β", "params": "parameters β", "compute": "compute-frontier β"}
START, END = "<!-- demo:start -->", "<!-- demo:end -->"


def _p(fit: dict) -> str:
    """The p-value that decided the cell (marked when borderline), and the re-selecting
    frontier null's when it differs."""
    p = fit.get("p_trend")
    parts = [] if p is None else [f"p={p:.2g}" + (" (borderline)" if is_borderline(p) else "")]
    if fit.get("p_perm") is not None and fit["p_perm"] != fit.get("p_trend"):
        parts.append(f"null p={fit['p_perm']:.2g}")
    return ", ".join(parts)


def cell(fit: dict | None) -> str:
    """``β [lo, hi] p=…`` of a power-law fit (marked when indicative), or why there is none."""
    if fit is None:
        return "–"
    if fit["status"] == "insufficient":
        n = fit.get('n_sizes')
        return f"no exponent (only {n} size{'' if n == 1 else 's'})"
    if fit["status"] == "no-trend" and fit.get("p_trend") is not None and fit["p_trend"] < ALPHA:
        return "; ".join(v for v in ("no exponent: the error increases", _p(fit)) if v)
    if fit["status"] != "ok":
        return "; ".join(v for v in (f"no exponent ({fit['status']})", _p(fit)) if v)
    lo, hi = fit["ci"]["beta"]
    text = f"{fit['params']['beta']:.2f} [{lo:.2f}, {hi:.2f}] {_p(fit)}".rstrip()
    if fit.get("p_curv") is not None and fit["p_curv"] < ALPHA:
        text += f" (bends: curvature p={fit['p_curv']:.2g})"
    return text + (" (indicative)" if fit.get("indicative") else "")


def slice_line(fits: list[dict], family: str) -> str:
    """Which runs each column used (from the test-loss rows)."""
    parts = []
    for axis, label in AXES.items():
        row = next((f for f in fits if (f["family"], f["metric"], f["axis"], f["form"])
                    == (family, SELECTION, axis, "power")), None)
        desc = (row or {}).get("slice") or {}
        if desc.get("fixed") and desc.get("value") is not None:
            parts.append(f"{label}: {desc['fixed']} = {desc['value']:.3g} ({desc['rule']})")
        elif desc:
            parts.append(f"{label}: {desc['rule']}")
    return "; ".join(parts)


def table(fits: list[dict]) -> str:
    """One Markdown table per family: metric rows, axis columns (pure power law), the
    fitted slices and what the marks mean."""
    power = {(f["family"], f["metric"], f["axis"]): f for f in fits if f["form"] == "power"}
    lines = []
    for family in sorted({f["family"] for f in fits}):
        lines += [f"**{family}**", "", "| metric | " + " | ".join(AXES.values()) + " |",
                  "|---" * (len(AXES) + 1) + "|"]
        for metric, label in METRICS.items():
            cells = [cell(power.get((family, metric, axis))) for axis in AXES]
            if any(c != "–" for c in cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", f"Fitted slices: {slice_line(fits, family)}.", ""]
    lines.append("95 % intervals: t-interval of the log-log slope (n − 2 d.o.f.). p: F-test "
                 "against no dependence (compute frontier: permutation null, compute labels "
                 "shuffled among the frontier runs chosen by test loss; the test loss's own "
                 "frontier: F-test over all runs, and its null p with labels shuffled among "
                 "all runs and the frontier re-selected). Each cell shows the p-value that "
                 "decided it. An exponent is given only where p < 0.05 and the error "
                 "decreases; *increases*: a significant increase. *borderline*: "
                 "0.01 < p < 0.1, a cell that may flip between an exponent and none on "
                 "another machine. *bends*: the curvature test rejects a straight log-log line. "
                 "*indicative*: fitted on <= 4 sizes. The report adds each row's smallest "
                 "detectable exponent and the compute-optimal allocation.")
    return "\n".join(lines).rstrip() + "\n"


def write_block(doc: Path, text: str) -> None:
    content = doc.read_text()
    if START not in content or END not in content:
        raise SystemExit(f"{doc}: no {START} ... {END} block to replace")
    head, rest = content.split(START, 1)
    tail = rest.split(END, 1)[1]
    tmp = doc.with_suffix(".tmp")
    tmp.write_text(f"{head}{START}\n{text}{END}{tail}")
    tmp.replace(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="folder written by mlip-scaling report")
    parser.add_argument("--doc", type=Path, help="Markdown page to update between the markers")
    parser.add_argument("--figure", type=Path, help="copy test_loss.png here (with --doc)")
    args = parser.parse_args(argv)
    fits_file = args.report / "fits.json"
    if not fits_file.is_file():
        raise SystemExit(f"{fits_file}: missing; run mlip-scaling report first")
    text = table(json.loads(fits_file.read_text())["fits"])
    if args.doc is None:
        print(text, end="")
        return 0
    if args.figure is not None:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.report / "test_loss.png", args.figure)
        rel = os.path.relpath(args.figure.resolve(), args.doc.resolve().parent)
        text += f"\n![test loss against data, parameters and compute]({rel})\n"
    write_block(args.doc, text)
    print(f"{args.doc}: demo table updated from {fits_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
