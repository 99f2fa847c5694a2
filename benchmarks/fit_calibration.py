"""Planted-law calibration table of the scaling-law fits.

    python benchmarks/fit_calibration.py                       # 400 reps (power), 200 (others)
    python benchmarks/fit_calibration.py --reps 50 --settings power-4,floor-5

Columns: setting, repetitions, fraction reported (status ok), bias and RMSE of the first
planted value, 95 % interval coverage per planted value (± its Monte-Carlo standard error,
over the reported fits), false-exponent rate (flat data), false-floor rate (floor-less
data) and flag rates (curvature, extrapolation, broken form chosen, collinear axes), each
± its Monte-Carlo error. Settings: ``mlip_scaling.scaling.fit_calibration``.
"""

from __future__ import annotations

import argparse
import sys

from mlip_scaling.scaling.fit_calibration import (
    SEED,
    SETTINGS,
    Summary,
    default_reps,
    default_seed,
    mc_error,
    run_setting,
)


def _pct(value: float | None, n: int) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} ± {100 * mc_error(value, n):.1f} %"


def row(s: Summary) -> str:
    """One Markdown table row."""
    cov = " / ".join(f"{k} {_pct(v, s.n_ok)}" for k, v in (s.coverage or {}).items()) or "–"
    rates = "; ".join(f"{k} {_pct(v, s.reps)}" for k, v in s.rates.items()) or "–"
    bias = "–" if s.bias is None else f"{s.bias:+.4f}"
    rmse = "–" if s.rmse is None else f"{s.rmse:.4f}"
    return (f"| {s.setting} | {s.reps} | {100 * s.reported:.0f} % | {bias} | {rmse} | "
            f"{cov} | {_pct(s.false_exponent, s.reps)} | {_pct(s.false_floor, s.reps)} | "
            f"{rates} | {s.seconds:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--reps", type=int, default=400, help="repetitions, power-law settings")
    parser.add_argument("--reps-nonlinear", type=int, default=200,
                        help="repetitions, floor, joint, broken and frontier settings")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="comma-separated names, or prefixes ending in '*'")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    names = []
    for pat in (n for n in args.settings.split(",") if n):
        hits = [k for k in SETTINGS if k.startswith(pat[:-1])] if pat.endswith("*") else [pat]
        names += [h for h in hits if h not in names]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        parser.error(f"unknown setting(s) {', '.join(unknown) or args.settings}; known: "
                     f"{', '.join(SETTINGS)}")
    print("| setting | reps | reported | bias | RMSE | coverage (95 %) | false exponent | "
          "false floor | flags | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        reps = default_reps(name, args.reps, args.reps_nonlinear)
        print(row(run_setting(name, reps, seed=default_seed(name, args.seed))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
