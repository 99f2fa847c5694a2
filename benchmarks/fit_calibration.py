"""Planted-law calibration table of the scaling-law fits.

    python benchmarks/fit_calibration.py                       # 200 reps (power), 100 (others)
    python benchmarks/fit_calibration.py --reps 50 --settings power-4,floor-5

Columns: setting, repetitions, fraction reported (status ok), bias and RMSE of the first
exponent, 95 % interval coverage per exponent, false-exponent rate (flat data) and
false-floor rate (floor-less data). Settings: ``mlip_scaling.scaling.fit_calibration``.
"""

from __future__ import annotations

import argparse
import sys

from mlip_scaling.scaling.fit_calibration import SETTINGS, Summary, run_setting


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if pct else f"{value:+.4f}"


def row(s: Summary) -> str:
    """One Markdown table row."""
    cov = " / ".join(f"{k} {100 * v:.1f} %" for k, v in (s.coverage or {}).items()) or "–"
    rmse = "–" if s.rmse is None else f"{s.rmse:.4f}"
    return (f"| {s.setting} | {s.reps} | {100 * s.reported:.0f} % | {_fmt(s.bias)} | {rmse} | "
            f"{cov} | {_fmt(s.false_exponent, True)} | {_fmt(s.false_floor, True)} | "
            f"{s.seconds:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--reps", type=int, default=200, help="repetitions, power-law settings")
    parser.add_argument("--reps-nonlinear", type=int, default=100,
                        help="repetitions, floor and joint settings")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    names = [n for n in args.settings.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    print("| setting | reps | reported | bias | RMSE | coverage (95 %) | false exponent | "
          "false floor | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, name in enumerate(names):
        reps = args.reps if SETTINGS[name].form == "power" else args.reps_nonlinear
        print(row(run_setting(name, reps, seed=args.seed + k)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
