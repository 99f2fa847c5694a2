"""``mlip-scaling sweep`` and ``evaluate``: their flags, and what they print."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from mlip_scaling.cli_args import NON_NEGATIVE_INT, POSITIVE_INT, output_file
from mlip_scaling.errors import ConfigError
from mlip_scaling.options import add_arguments
from mlip_scaling.scaling.eval_settings import EVAL_KEYS, EvalSettings

__all__ = ["add_sweep", "add_evaluate"]


def _sweep_flags(parser: argparse.ArgumentParser) -> None:
    from mlip_scaling.scaling.sweep import SweepPlan

    add_arguments(parser, SweepPlan)
    parser.add_argument("--plan", default=None, help="YAML plan file (overrides the flags)")
    parser.add_argument("--launcher", choices=["local", "slurm"], default="local",
                        help="where the runs go: this machine, or a Slurm array (submitit)")
    parser.add_argument("--jobs", type=POSITIVE_INT, default=1, help="local runs at the same time "
                        "(each gets its own process; give each --threads cores/jobs)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("forward", nargs="*", metavar="-- MLIP_TRAIN_ARGS",
                        help="arguments after -- are passed to every mlip-train call")
    slurm = parser.add_argument_group("slurm (with --launcher slurm)")
    slurm.add_argument("--slurm-partition", default=None,
                       help="Slurm partition (default: the cluster's default partition)")
    slurm.add_argument("--slurm-time", type=POSITIVE_INT, default=240, help="minutes per run")
    slurm.add_argument("--slurm-parallel", type=POSITIVE_INT, default=16,
                       help="runs at the same time")
    slurm.add_argument("--gpus", type=NON_NEGATIVE_INT, default=1,
                       help="GPUs per run (> 1: torchrun DDP; 0: CPU nodes)")
    slurm.add_argument("--cpus", type=POSITIVE_INT, default=8, help="CPU cores per run")


def _sweep(args: argparse.Namespace) -> int:
    from mlip_scaling.scaling import sweep

    plan = sweep.sweep_plan({k: getattr(args, k) for k in sweep.PLAN_KEYS},
                            sweep.load_plan(args.plan) if args.plan else {})
    runs = sweep.sweep_runs(plan, args.forward, check_out=not args.dry_run)
    todo = [r for r in runs if not sweep.is_finished(r)]
    stale = {r.name: m for r in runs if r not in todo for m in [sweep.plan_mismatches(r)] if m}
    if args.dry_run:
        for r in runs:
            state = "todo" if r in todo else "STALE" if r.name in stale else "done"
            print(f"{state}  {r.name}  {shlex.join(r.command)}")
    elif stale:
        first = next(r for r in runs if r.name in stale)
        more = f" (and {len(stale) - 1} more runs)" if len(stale) > 1 else ""
        raise ConfigError(f"{first.export}: trained with other settings than the plan "
                          f"({'; '.join(stale[first.name])}){more}; remove those runs or "
                          f"choose another --out")
    print(f"{len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to run")
    if args.dry_run or not todo:
        return 0
    slurm = {"partition": args.slurm_partition, "time": args.slurm_time,
             "parallel": args.slurm_parallel, "gpus": args.gpus, "cpus": args.cpus}
    return sweep.run_sweep(todo, plan.out, args.launcher, args.jobs, args.quiet, slurm)


def add_sweep(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``sweep`` subcommand."""
    p = sub.add_parser("sweep", help="train a grid of models x data sizes", formatter_class=fmt)
    _sweep_flags(p)
    p.set_defaults(func=_sweep)


def _evaluate(args: argparse.Namespace) -> int:
    """Exit status 1 when an evaluation failed."""
    from mlip_scaling.scaling.evaluate import RESULTS_NAME, evaluate_directory, other_records

    settings = {k: getattr(args, k) for k in EVAL_KEYS}
    records = evaluate_directory(args.directory, jobs=args.jobs, results_path=args.results,
                                 progress=not args.quiet,
                                 oracle_trusted=True,  # --oracle is typed by the user
                                 **settings)
    failed = [r for r in records if r["status"] != "ok"]
    target = args.results or Path(args.directory) / RESULTS_NAME
    print(f"{len(records)} model files, {len(failed)} failed -> {target}")
    if args.verbose:
        from mlip_scaling.scaling.report import print_models

        print_models(records, [])
    for r in records:
        if r.get("error"):
            print(f"{r['status']} {r['checkpoint']}: {r['error']}")
    kept, stale = other_records(target, records)
    if kept:
        print(f"kept {len(kept)} record(s) of model files not in {args.directory}"
              + (f"; {len(stale)} name a missing file (not deleted): "
                 + ", ".join(str(r.get("checkpoint")) for r in stale) if stale else ""))
    return 1 if failed else 0


def add_evaluate(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``evaluate`` subcommand: its settings' flags come from :class:`EvalSettings`."""
    from mlip_scaling.scaling.evaluate import RESULTS_NAME

    p = sub.add_parser("evaluate", help="test-split and downstream metrics of model files",
                       formatter_class=fmt)
    p.add_argument("directory", help="folder of exported model files (searched recursively)")
    add_arguments(p, EvalSettings)
    p.add_argument("--jobs", type=NON_NEGATIVE_INT, default=1,
                   help="parallel processes: model files side by side, or the relaxations "
                        "of a single new file (0: all cores)")
    p.add_argument("--results", type=output_file, default=None,
                   help=f"results file (default: DIR/{RESULTS_NAME})")
    p.set_defaults(func=_evaluate)
