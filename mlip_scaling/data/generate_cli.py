"""``mlip-data generate``: label generated structures with an oracle into an HDF5 store."""

from __future__ import annotations

import argparse
import time

from mlip_scaling.cli_args import POSITIVE_INT, SEED, output_file
from mlip_scaling.data.generate import DEFAULT_STRUCTURES, RECIPES, generate_dataset

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the generate options to ``parser``."""
    parser.add_argument("--recipe", default="default",
                        help=f"structure recipe: {', '.join(RECIPES)} (default = the embedded "
                             "dataset: EMT metals + Stillinger-Weber Si)")
    parser.add_argument("--oracle", default=None,
                        help="label source (emt, sw, tersoff[:SET], eam:FILE, teacher:sevennet, "
                             "teacher:chgnet, module:factory, mixed:emt+sw); default: the "
                             "recipe's own")
    parser.add_argument("--elements", nargs="*", default=[],
                        help="elements to generate (for oracles without a recipe)")
    parser.add_argument("--structures", type=POSITIVE_INT, default=DEFAULT_STRUCTURES,
                        help="number of structures")
    parser.add_argument("--out", type=output_file, required=True, help="output .h5 file")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed")
    parser.add_argument("--jobs", "--workers", dest="workers", type=POSITIVE_INT, default=None,
                        help="processes, as --jobs everywhere (default: all cores; --workers "
                             "is the old name)")
    parser.add_argument("--chunk-size", type=POSITIVE_INT, default=500,
                        help="structures per resumable chunk")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset described by ``args``."""
    start = time.perf_counter()
    out = generate_dataset(args.oracle, args.structures, args.out, seed=args.seed,
                           workers=args.workers, recipe=args.recipe, progress=not args.quiet,
                           chunk_size=args.chunk_size, elements=args.elements)
    print(f"wrote {args.structures} structures to {out} in {time.perf_counter() - start:.1f} s")
    return 0
