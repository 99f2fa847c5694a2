"""Monte Carlo of the compute-optimal allocation's intervals and the planner's grids.

    python benchmarks/plan_calibration.py allocation --sizes 5 --reps 200
    python benchmarks/plan_calibration.py planner --reps 400

Prints one JSON line per setting (see mlip_scaling/scaling/plan_calibration.py).
"""

from __future__ import annotations

import argparse
import json

from mlip_scaling.scaling.plan_calibration import allocation_coverage, planner_check_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["allocation", "planner"])
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 5])
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--boot", type=int, default=40, help="bootstrap refits per repetition")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seeds", type=int, default=1, help="runs per (N, D) cell")
    p.add_argument("--rho", type=float, default=0.0, help="correlation of a cell's runs")
    args = p.parse_args()
    if args.what == "allocation":
        for k in args.sizes:
            out = allocation_coverage(k, args.reps, n_boot=args.boot, seed=args.seed,
                                      seeds=args.seeds, rho=args.rho)
            name = f"allocation-{k}x{k}" + (f"-{args.seeds}seeds-rho{args.rho:g}"
                                            if args.seeds > 1 else "")
            print(json.dumps({"setting": name, **out}), flush=True)
    else:
        for row in planner_check_table(args.reps, args.seed):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
