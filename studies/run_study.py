"""Run a scaling study from its plan: ``python studies/run_study.py PLAN --out DIR``.

Generates the dataset, trains the data- and parameter-axis sweeps of every family to
convergence, evaluates every model (test split and downstream metrics), fits and writes
``DIR/report`` (see :mod:`mlip_scaling.scaling.study`). Rerunning continues an interrupted
study; ``--dry-run`` lists its runs and what is left; ``--families`` runs some families of the
plan only (their runs are the plan's: a family added to a plan can be run on its own and its
records merged with the others' by ``studies/merge_results.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlip_scaling.errors import cli_entry
from mlip_scaling.scaling.study import load_study, only_families, run_study, study_runs


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=Path, help="study plan (YAML), e.g. studies/reference.yaml")
    parser.add_argument("--out", type=Path, required=True, help="study folder")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at the same time")
    parser.add_argument("--families", default=None,
                        help="comma-separated family labels of the plan to run (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    spec = load_study(args.plan)
    if args.families:
        spec = only_families(spec, args.families.split(","), str(args.plan))
    if args.dry_run:
        from mlip_scaling.scaling.sweep import is_finished

        runs = study_runs(spec, args.out)
        for run in runs:
            print(f"{'done' if is_finished(run) else 'todo'}  {run.name}")
        print(f"{len(runs)} runs")
        return 0
    report = run_study(spec, args.out, jobs=max(1, args.jobs), quiet=args.quiet)
    print(f"study report: {report / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
