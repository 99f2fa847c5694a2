"""``mlip-scaling plan``: minimal detectable exponents of a planned grid, and the grid that
resolves a given exponent (from a pilot's results or from given noise levels)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlip_scaling.cli_args import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Number, output_file
from mlip_scaling.errors import ConfigError, DataError

__all__ = ["add_plan"]

RATE = Number(low=0.5, high=1, high_open=True)


def _sizes(text: str) -> tuple[float, ...]:
    try:
        sizes = tuple(sorted({float(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}"
                                         ) from None
    if len(sizes) < 3 or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"needs >= 3 distinct positive sizes, got {text!r}")
    return sizes


def _noises(args: argparse.Namespace) -> tuple[dict, tuple[float, ...] | None, dict]:
    """({family: [Noise]}, the pilot's sizes, the pilot's counts) from the pilot or flags."""
    from mlip_scaling.scaling.plan_study import noise_from_records, pilot_sizes
    from mlip_scaling.scaling.planner import Noise
    from mlip_scaling.scaling.report import load_records, split_records

    if args.pilot is None:
        if args.sigma_run is None and args.sigma_shared is None and args.sigma_eval is None:
            raise ConfigError("give a pilot folder or noise levels (--sigma-shared, "
                              "--sigma-run, --sigma-eval)")
        kind = args.count_kind if args.sigma_eval else ""
        noise = Noise(args.metric or "metric", args.sigma_run or 0.0, args.sigma_eval or 0.0,
                      args.count_ref, kind, args.sigma_shared or 0.0)
        return {"given": [noise]}, None, {}
    if not Path(args.pilot).exists():
        raise DataError(f"{args.pilot}: no such directory or file")
    usable, _ = split_records(load_records(args.pilot), args.allow_mixed)
    if not usable:
        raise DataError(f"{args.pilot}: no usable records")
    metrics = [args.metric] if args.metric else None
    found = noise_from_records(usable, args.axis, metrics)
    if not any(found.values()):
        raise DataError(f"{args.pilot}: no metric has >= 3 sizes on the {args.axis} axis")
    counts = {k: max((r.get("settings") or {}).get(s) or 0 for r in usable)
              for k, s in (("relaxations", "k_relax"), ("md_steps", "md_steps"))}
    return found, pilot_sizes(usable, args.axis), counts


def _plan(args: argparse.Namespace) -> int:
    from mlip_scaling.io_utils import atomic_write_text
    from mlip_scaling.scaling.plan_study import plan_study, study_lines
    from mlip_scaling.scaling.planner import Grid
    from mlip_scaling.scaling.report import _rich_table

    if (args.beta is None) != (args.half_width is None):
        raise ConfigError("--beta and --half-width go together")
    found, pilot, counts = _noises(args)
    sizes = args.sizes or pilot
    if sizes is None:
        raise ConfigError("give the planned sizes (--sizes) when there is no pilot")
    grid = Grid(sizes, args.seeds, args.relaxations or counts.get("relaxations") or 0,
                args.md_steps or counts.get("md_steps") or 0)
    out = {}
    for family, noises in found.items():
        rows = plan_study(noises, grid, args.beta, args.half_width, args.rate)
        header, cells = study_lines(rows, args.beta)
        _rich_table(f"{family}: {len(sizes)} sizes {sizes[0]:.3g}..{sizes[-1]:.3g} x "
                    f"{grid.seeds} seed(s), {grid.relaxations} relaxations and "
                    f"{grid.md_steps} MD steps per model", header, cells)
        for note in sorted({r["noise"].note for r in rows if r["noise"].note}):
            print(f"note: {note}")
        out[family] = [_jsonable(r) for r in rows]
    if args.json:
        atomic_write_text(json.dumps(out, indent=1) + "\n", args.json)
    return 0


def _jsonable(row: dict) -> dict:
    from dataclasses import asdict

    out = {k: (asdict(v) if k == "noise" else v) for k, v in row.items() if k != "needed"}
    if "needed" in row:
        out["needed"] = {**row["needed"], "grid": asdict(row["needed"]["grid"])}
    return out


def add_plan(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``plan`` subcommand."""
    p = sub.add_parser("plan", formatter_class=fmt,
                       help="minimal detectable exponent of a planned grid, and the grid "
                       "that resolves a given exponent",
                       description="Per metric: the smallest exponent the planned grid "
                       "detects (power 0.8, alpha 0.05) and, with --beta and --half-width, "
                       "the cheapest grid over the same size range that resolves it (trend "
                       "significant and 95 % half-width <= the target) with probability >= "
                       "--rate. Noise from a pilot folder (evaluation results) or from "
                       "--sigma-* (standard deviations of the log value).")
    p.add_argument("pilot", nargs="?", default=None,
                   help="pilot folder or scaling_results.json (omit to give noise levels)")
    p.add_argument("--axis", choices=["params", "data"], default="params",
                   help="the pilot's (and the plan's) axis")
    p.add_argument("--metric", default=None, help="one metric (default: all in the pilot)")
    p.add_argument("--sizes", type=_sizes, default=None,
                   help="planned sizes, comma-separated (default: the pilot's)")
    p.add_argument("--seeds", type=POSITIVE_INT, default=1, help="seeds per size")
    p.add_argument("--relaxations", type=POSITIVE_INT, default=None,
                   help="relaxations per model (default: the pilot's)")
    p.add_argument("--md-steps", type=POSITIVE_INT, default=None,
                   help="MD steps per model (default: the pilot's)")
    p.add_argument("--beta", type=POSITIVE, default=None, help="exponent to resolve")
    p.add_argument("--half-width", type=POSITIVE, default=None,
                   help="wanted 95 %% half-width of the exponent")
    p.add_argument("--rate", type=RATE, default=0.9,
                   help="wanted probability of resolving it")
    given = p.add_argument_group("given noise (without a pilot; SD of the log value)")
    given.add_argument("--sigma-shared", type=NON_NEGATIVE, default=None,
                       help="scatter shared by the seeds of a size")
    given.add_argument("--sigma-run", type=NON_NEGATIVE, default=None,
                       help="seed-to-seed scatter")
    given.add_argument("--sigma-eval", type=NON_NEGATIVE, default=None,
                       help="evaluation noise of one model at --count-ref evaluations")
    given.add_argument("--count-ref", type=POSITIVE_INT, default=1,
                       help="evaluations behind --sigma-eval")
    given.add_argument("--count-kind", choices=["relaxations", "md_steps"],
                       default="relaxations", help="what --count-ref counts")
    p.add_argument("--allow-mixed", action="store_true", help="pilot runs of several datasets")
    p.add_argument("--json", type=output_file, default=None, help="also write the plan here")
    p.set_defaults(func=_plan)

