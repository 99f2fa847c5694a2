"""``mlip-scaling``: sweeps, evaluation, fits, reports and bias/expressivity studies."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlip_scaling.errors import DataError, cli_entry

__all__ = ["main"]

_FMT = argparse.ArgumentDefaultsHelpFormatter


def _fit(args: argparse.Namespace) -> int:
    from mlip_scaling.scaling.report import fit_records, load_records, split_records

    usable, excluded = split_records(load_records(args.results), args.allow_mixed)
    metrics = [args.metric] if args.metric else None
    rows = fit_records(usable, metrics=metrics or
                       [m for m in ("test_loss",) if any(m in r["metrics"] for r in usable)])
    for r in rows:
        if args.axis and r["axis"] != args.axis:
            continue
        line = {k: r[k] for k in ("family", "metric", "axis", "form", "status", "reason",
                                  "params", "ci", "extrapolation_error")}
        print(json.dumps(line))
    for rec, why in excluded:
        print(f"excluded {rec.get('checkpoint')}: {why}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from mlip_scaling.scaling.evaluate import RESULTS_NAME, evaluate_directory, find_models
    from mlip_scaling.scaling.report import build_report

    directory = Path(args.directory)
    if not directory.exists():
        raise DataError(f"{directory}: no such directory or file")
    if directory.is_dir() and (find_models(directory) or not (directory / RESULTS_NAME).exists()):
        evaluate_directory(directory, downstream=not args.no_downstream,
                           k_relax=args.k_relax, md_steps=args.md_steps,
                           max_test=args.max_test, progress=not args.quiet)
    out = Path(args.out) if args.out else (directory if directory.is_dir()
                                           else directory.parent) / "report"
    build_report(directory, out, allow_mixed=args.allow_mixed, quiet=args.quiet)
    return 0


def _bias(args: argparse.Namespace) -> int:
    from mlip_scaling.scaling.bias import bias_expressivity

    path = Path(args.predictions)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path) as fh:
            preds, labels = fh["predictions"], fh["labels"]
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"{path}: needs arrays 'predictions' [R,P] and 'labels' [P] ({exc})"
                        ) from None
    try:
        result = bias_expressivity(preds, labels, tau=args.tau, n_bins=args.bins)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
    print(json.dumps(result, indent=1))
    return 0


def _parser() -> argparse.ArgumentParser:
    from mlip_scaling.scaling import evaluate, sweep

    parser = argparse.ArgumentParser(prog="mlip-scaling", description=__doc__, formatter_class=_FMT)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="train a grid of models x data sizes", formatter_class=_FMT)
    sweep.configure(p)
    p.set_defaults(func=sweep.run)
    p = sub.add_parser("evaluate", help="test-split and downstream metrics of model files",
                       formatter_class=_FMT)
    evaluate.configure(p)
    p.set_defaults(func=evaluate.run)
    p = sub.add_parser("fit", help="fit scaling laws to evaluation results", formatter_class=_FMT)
    p.add_argument("results", help="scaling_results.json or the folder holding it")
    p.add_argument("--metric", default=None, help="metric to fit (default: test_loss)")
    p.add_argument("--axis", choices=["data", "params", "compute", "joint"], default=None)
    p.add_argument("--allow-mixed", action="store_true", help="fit runs of different datasets")
    p.set_defaults(func=_fit)
    p = sub.add_parser("report", help="evaluate (as needed), fit and write plots + HTML",
                       formatter_class=_FMT)
    p.add_argument("directory", help="folder of model files or with scaling_results.json")
    p.add_argument("--out", default=None, help="report folder (default: DIR/report)")
    p.add_argument("--allow-mixed", action="store_true", help="fit runs of different datasets")
    p.add_argument("--no-downstream", action="store_true", help="skip relaxation/MD metrics")
    p.add_argument("--k-relax", type=int, default=8, help="structures relaxed per model")
    p.add_argument("--md-steps", type=int, default=500, help="NVE steps per model")
    p.add_argument("--max-test", type=int, default=None, help="cap on test structures")
    p.add_argument("--quiet", action="store_true", help="no progress or tables")
    p.set_defaults(func=_report)
    p = sub.add_parser("bias", help="bias/expressivity of replicate predictions",
                       formatter_class=_FMT)
    p.add_argument("predictions", help=".npz with 'predictions' [R,P] and 'labels' [P]")
    p.add_argument("--tau", type=float, default=0.01, help="target half-width (label units)")
    p.add_argument("--bins", type=int, default=64, help="bins of the outcome grid")
    p.set_defaults(func=_bias)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mlip-scaling``."""
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
