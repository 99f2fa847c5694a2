"""``mlip-scaling``: sweeps, evaluation, scaling-law fits, reports and bias/expressivity.

Subcommands: sweep, evaluate, fit, report, bias, import-fairchem
(``mlip-scaling COMMAND --help``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlip_scaling.cli_args import (
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    HelpFormatter,
    Number,
    OneLineParser,
    add_output_flags,
    add_version,
    output_dir,
    output_file,
    run_command,
)
from mlip_scaling.errors import ConfigError, DataError, cli_entry

__all__ = ["main"]

_FMT = HelpFormatter
#: bins of the outcome grid: a one-hot array of R x S x P x bins floats is built
BINS = Number(integer=True, low=2, high=4096)
Q_MIN = Number(low=0, low_open=True, high=1)
_EVAL_KEYS = ("oracle", "data", "k_relax", "md_steps", "downstream", "max_test",
              "md_temperature", "relax_max_atoms", "md_min_length")


def _split_list(values: list[str] | None) -> list[str] | None:
    return [v for text in values for v in text.split(",") if v] if values else None


def _fit(args: argparse.Namespace) -> int:
    from mlip_scaling.io_utils import atomic_write_text
    from mlip_scaling.scaling.report import (
        METRICS,
        exit_status,
        fit_records,
        load_records,
        print_table,
        split_records,
    )

    metrics = _split_list(args.metric)
    unknown = sorted(set(metrics or []) - set(METRICS))
    if unknown:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
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


def _existing_settings(results: Path) -> dict:
    from mlip_scaling.scaling.report import load_records

    if not results.is_file():
        return {}
    for rec in load_records(results):
        if isinstance(rec.get("settings"), dict):
            return {k: rec["settings"][k] for k in _EVAL_KEYS if k in rec["settings"]}
    return {}


def _evaluate_missing(directory: Path, args: argparse.Namespace) -> None:
    """Run evaluate when ``directory`` holds model files without results, reusing the
    settings of the existing results (command-line flags override them)."""
    try:
        from mlip_scaling.scaling import evaluate
    except ImportError:
        return
    from mlip_scaling.io_utils import file_hash
    from mlip_scaling.scaling.report import RESULTS_NAME, load_records

    results = directory / RESULTS_NAME
    known = {r.get("hash") for r in load_records(results) if r.get("status") == "ok"
             } if results.is_file() else set()  # failed evaluations are retried
    missing = [p for p in evaluate.find_models(directory)
               if file_hash(p) not in known and not evaluate.is_run_state(p)]
    if not missing:
        if not results.is_file():
            raise DataError(f"{directory}: no model files (*.pt) and no {RESULTS_NAME}")
        return
    settings = _existing_settings(results)
    if args.oracle is None and settings.get("oracle"):  # read from a file: built-ins only
        from mlip_scaling.data.oracles import check_oracle

        check_oracle(settings["oracle"], trusted=False, where=f"{results}: settings")
    given = {"oracle": args.oracle, "data": args.data, "k_relax": args.k_relax,
             "md_steps": args.md_steps, "max_test": args.max_test,
             "relax_max_atoms": args.relax_max_atoms, "md_min_length": args.md_min_length,
             "downstream": False if args.no_downstream else None}
    settings.update({k: v for k, v in given.items() if v is not None})
    if not args.quiet:
        print(f"evaluating {len(missing)} model file(s) without results")
    evaluate.evaluate_directory(directory, jobs=args.jobs, progress=not args.quiet,
                                oracle_trusted=args.oracle is not None, **settings)


def _report(args: argparse.Namespace) -> int:
    from mlip_scaling.scaling.report import exit_status, write_report

    source = Path(args.directory)
    if not source.exists():
        raise DataError(f"{source}: no such directory or file")
    if source.is_dir() and not args.no_evaluate:
        _evaluate_missing(source, args)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / "report"
    _, rows = write_report(source, out, allow_mixed=args.allow_mixed, n_perm=args.n_perm,
                           quiet=args.quiet, verbose=args.verbose > 0)
    return exit_status(rows)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as fh:
            return np.asarray(fh["predictions"]), np.asarray(fh["labels"])
    except (KeyError, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: needs arrays 'predictions' [R,P] or [R,S,P] and 'labels' [P]"
                        f" ({type(exc).__name__}: {exc})") from None


def _bias_input(path: Path, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    from mlip_scaling.scaling.bias import replicate_predictions

    if path.is_dir():
        return replicate_predictions(path, data=args.data, n_probes=args.probes,
                                     quantity=args.quantity)
    if path.is_file():
        return _load_npz(path)
    raise DataError(f"{path}: no such file or directory")


def _bias(args: argparse.Namespace) -> int:
    from mlip_scaling.io_utils import atomic_write_text
    from mlip_scaling.scaling.bias import compare_bias_expressivity

    paths = [Path(p) for p in args.input]
    sets = [_bias_input(path, args) for path in paths]
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


def _add_fit(sub) -> None:
    p = sub.add_parser("fit", help="fit scaling laws to evaluation results (exit status 1 "
                       "when no law could be fitted)", formatter_class=_FMT,
                       description="Power law, floor form, joint law and compute frontier per "
                       "family, metric and axis: 95 % intervals (t for the power law, profile "
                       "likelihood for the floor and joint forms), trend-test p-values, the "
                       "fitted slice, and the compute frontier's permutation null.")
    p.add_argument("results", help="scaling_results.json or the folder holding it")
    p.add_argument("--metric", action="append", default=None,
                   help="metric(s) to fit, repeatable or comma-separated (default: all present)")
    p.add_argument("--axis", action="append", default=None,
                   help="axes: data, params, compute, joint (default: all)")
    p.add_argument("--allow-mixed", action="store_true", help="fit runs of different datasets")
    p.add_argument("--n-perm", type=POSITIVE_INT, default=1000,
                   help="permutations of the compute frontier's null")
    p.add_argument("--json", type=output_file, default=None,
                   help="also write the fits to this JSON file")
    p.set_defaults(func=_fit)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="evaluate (as needed), fit, write plots + HTML + tables "
                       "(exit status as fit's)",
                       formatter_class=_FMT,
                       description="Model files without results are evaluated first, with "
                       "the settings of the existing results unless flags override them.")
    p.add_argument("directory", help="folder of model files and/or scaling_results.json, or "
                   "a results file")
    p.add_argument("--out", type=output_dir, default=None,
                   help="report folder (default: DIR/report)")
    p.add_argument("--allow-mixed", action="store_true", help="fit runs of different datasets")
    p.add_argument("--n-perm", type=POSITIVE_INT, default=1000,
                   help="permutations of the compute frontier's null")
    p.add_argument("--no-evaluate", action="store_true", help="use existing results only")
    p.add_argument("--oracle", default=None, help="evaluate: downstream reference calculator")
    p.add_argument("--data", default=None, help="evaluate: dataset file")
    p.add_argument("--no-downstream", action="store_true", help="evaluate: test metrics only")
    p.add_argument("--k-relax", type=NON_NEGATIVE_INT, default=None,
                   help="evaluate: structures relaxed per model (default: as in the existing "
                        "results, else evaluate's)")
    p.add_argument("--md-steps", type=NON_NEGATIVE_INT, default=None,
                   help="evaluate: NVE steps per model")
    p.add_argument("--max-test", type=POSITIVE_INT, default=None,
                   help="evaluate: cap on test structures")
    p.add_argument("--relax-max-atoms", type=POSITIVE_INT, default=None,
                   help="evaluate: downstream work only on test structures with at most this "
                        "many atoms")
    p.add_argument("--md-min-length", type=POSITIVE, default=None,
                   help="evaluate: smallest MD cell height (Å)")
    p.add_argument("--jobs", type=NON_NEGATIVE_INT, default=1,
                   help="evaluate: parallel relaxations (0: all cores)")
    p.set_defaults(func=_report)


def _add_bias(sub) -> None:
    p = sub.add_parser("bias", help="bias/expressivity of replicate predictions",
                       formatter_class=_FMT,
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


def _parser() -> argparse.ArgumentParser:
    from mlip_scaling.scaling import evaluate, sweep

    parser = OneLineParser(prog="mlip-scaling", description=__doc__, formatter_class=_FMT)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="train a grid of models x data sizes", formatter_class=_FMT)
    sweep.configure(p)
    p.set_defaults(func=sweep.run)
    p = sub.add_parser("evaluate", help="test-split and downstream metrics of model files",
                       formatter_class=_FMT)
    evaluate.configure(p)
    p.set_defaults(func=evaluate.run)
    _add_fit(sub)
    _add_report(sub)
    _add_bias(sub)
    from mlip_scaling.models.equiformer_v2 import fairchem_cli

    p = sub.add_parser("import-fairchem", formatter_class=_FMT,
                       help="convert a fairchem EquiformerV2 (OMat24) checkpoint to a model file")
    fairchem_cli.configure(p)
    p.set_defaults(func=fairchem_cli.run)
    from mlip_scaling import export

    p = sub.add_parser("export", formatter_class=_FMT,
                       help="write a torch.export program (.pt2) of a model file")
    export.configure(p)
    p.set_defaults(func=export.run)
    for command in sub.choices.values():
        add_output_flags(command)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mlip-scaling``."""
    args = _parser().parse_args(argv)
    return run_command(args, args.func)


if __name__ == "__main__":
    raise SystemExit(main())
