"""``mlip-scaling fit``, ``report`` and ``bias``: their flags, and what they print."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlip_scaling.cli_args import (
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    Number,
    output_dir,
    output_file,
)
from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.options import add_arguments
from mlip_scaling.scaling.eval_settings import EVAL_KEYS, EvalSettings

__all__ = ["add_fit", "add_report", "add_bias"]

#: bins of the outcome grid: a one-hot array of R x S x P x bins floats is built
BINS = Number(integer=True, low=2, high=4096)
Q_MIN = Number(low=0, low_open=True, high=1)
BOOT = Number(integer=True, low=20)


def _split_list(values: list[str] | None) -> list[str] | None:
    return [v for text in values for v in text.split(",") if v] if values else None


def _fit(args: argparse.Namespace) -> int:
    from mlip_scaling.io_utils import atomic_write_text
    from mlip_scaling.scaling.metrics import FITTED
    from mlip_scaling.scaling.report import (
        exit_status,
        fit_records,
        load_records,
        print_table,
        split_records,
    )

    metrics = _split_list(args.metric)
    unknown = sorted(set(metrics or []) - set(FITTED))
    if unknown:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(FITTED)}")
    usable, excluded = split_records(load_records(args.results), args.allow_mixed)
    if not usable:
        raise DataError(f"{args.results}: no usable records ({len(excluded)} excluded)")
    rows = fit_records(usable, metrics=metrics, axes=_split_list(args.axis),
                       n_perm=args.n_perm)
    if not args.quiet:  # the exit status and --json still tell
        print_table(rows, verbose=args.verbose > 0)
        for rec, why in excluded:
            print(f"excluded {rec.get('checkpoint')}: {why}")
    if args.json:
        atomic_write_text(json.dumps(rows, indent=1) + "\n", args.json)
    return exit_status(rows)


def _evaluate_missing(directory: Path, args: argparse.Namespace) -> None:
    """Evaluate the model files without results (settings: the stored ones < flags)."""
    from mlip_scaling.scaling.evaluate import evaluate_missing, missing_models

    missing = missing_models(directory)
    if not missing:
        return
    if not args.quiet:
        print(f"evaluating {len(missing)} model file(s) without results")
    evaluate_missing(directory, {k: getattr(args, k) for k in EVAL_KEYS}, jobs=args.jobs,
                     progress=not args.quiet)


def _report(args: argparse.Namespace) -> int:
    from mlip_scaling.scaling.report import exit_status, write_report

    source = Path(args.directory)
    if not source.exists():
        raise DataError(f"{source}: no such directory or file")
    if source.is_dir() and not args.no_evaluate:
        _evaluate_missing(source, args)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / "report"
    _, rows = write_report(source, out, allow_mixed=args.allow_mixed, n_perm=args.n_perm,
                           quiet=args.quiet, verbose=args.verbose > 0, n_boot=args.n_boot)
    return exit_status(rows)


def _bias(args: argparse.Namespace) -> int:
    from mlip_scaling.io_utils import atomic_write_text
    from mlip_scaling.scaling.bias import compare_bias_expressivity, read_predictions

    paths = [Path(p) for p in args.input]
    sets = [read_predictions(path, args.data, args.probes, args.quantity) for path in paths]
    try:
        results = compare_bias_expressivity(sets, tau=args.tau, span=args.span,
                                            n_bins=args.bins, q_min=args.q_min)
    except ValueError as exc:
        raise DataError(f"{', '.join(map(str, paths))}: {exc}") from None
    payload = results[0] if len(results) == 1 else dict(zip(args.input, results))
    text = json.dumps(payload, indent=1)
    print(text)
    if args.json:
        atomic_write_text(text + "\n", args.json)
    return 0


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    """The fitting flags that ``fit`` and ``report`` share."""
    p.add_argument("--allow-mixed", action="store_true", help="fit runs of different datasets")
    p.add_argument("--n-perm", type=POSITIVE_INT, default=1000,
                   help="permutations of the compute frontier's null")


def add_fit(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``fit`` subcommand."""
    p = sub.add_parser("fit", help="fit scaling laws to evaluation results (exit status 1 "
                       "when no law could be fitted)", formatter_class=fmt,
                       description="Power law, floor form, joint law and compute frontier per "
                       "family, metric and axis: 95 % intervals (t for the power law, profile "
                       "likelihood for the floor and joint forms), trend-test p-values, the "
                       "fitted slice, and the compute frontier's permutation null.")
    p.add_argument("results", help="scaling_results.json or the folder holding it")
    p.add_argument("--metric", action="append", default=None,
                   help="metric(s) to fit, repeatable or comma-separated (default: all present)")
    p.add_argument("--axis", action="append", default=None,
                   help="axes: data, params, compute, joint (default: all)")
    _add_fit_options(p)
    p.add_argument("--json", type=output_file, default=None,
                   help="also write the fits to this JSON file")
    p.set_defaults(func=_fit)


def add_report(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``report`` subcommand (evaluate settings: overrides of the stored ones)."""
    p = sub.add_parser("report", help="evaluate (as needed), fit, write plots + HTML + tables "
                       "(exit status as fit's)",
                       formatter_class=fmt,
                       description="Model files without results are evaluated first, with "
                       "the settings of the existing results unless flags override them.")
    p.add_argument("directory", help="folder of model files and/or scaling_results.json, or "
                   "a results file")
    p.add_argument("--out", type=output_dir, default=None,
                   help="report folder (default: DIR/report)")
    _add_fit_options(p)
    p.add_argument("--n-boot", type=BOOT, default=200,
                   help="bootstrap refits of the compute-optimal allocation's intervals")
    p.add_argument("--no-evaluate", action="store_true", help="use existing results only")
    add_arguments(p, EvalSettings, defaults=False, help_prefix="evaluate: ")
    p.add_argument("--jobs", type=NON_NEGATIVE_INT, default=1,
                   help="evaluate: parallel relaxations (0: all cores)")
    p.set_defaults(func=_report)


def add_bias(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``bias`` subcommand."""
    p = sub.add_parser("bias", help="bias/expressivity of replicate predictions",
                       formatter_class=fmt,
                       description="INPUT: a .npz with arrays 'predictions' [R,P] (or [R,S,P],"
                       " S draws per replicate) and 'labels' [P], or a folder of replicate "
                       "model files (same dataset) evaluated on test-split probes.")
    p.add_argument("input", nargs="+", help=".npz file or folder of replicate model files; "
                   "several are compared on one grid (same replicate count required)")
    p.add_argument("--tau", type=POSITIVE, default=0.01,
                   help="target half-width in label units (eV/atom or eV/Å)")
    p.add_argument("--span", type=POSITIVE, default=None,
                   help="fixed outcome grid half-width (default: 16 x tau)")
    p.add_argument("--bins", type=BINS, default=64, help="bins of the outcome grid |Ω|")
    p.add_argument("--q-min", type=Q_MIN, default=0.5, help="famine-bound threshold")
    p.add_argument("--quantity", choices=["energy", "forces"], default="energy",
                   help="folder input: predicted quantity")
    p.add_argument("--probes", type=POSITIVE_INT, default=64,
                   help="folder input: probe structures")
    p.add_argument("--data", default=None, help="folder input: dataset file override")
    p.add_argument("--json", type=output_file, default=None,
                   help="also write the result to this JSON file")
    p.set_defaults(func=_bias)
