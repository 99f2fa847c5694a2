"""``mlip-data``: convert, inspect and generate datasets."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from mlip_scaling.cli_args import (
    POSITIVE_INT,
    SEED,
    output_file,
    run_subcommand,
    subcommand_parser,
)
from mlip_scaling.data.embedded import default_data_path
from mlip_scaling.errors import cli_entry

__all__ = ["main"]


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from mlip_scaling.data.summary import dataset_summary, verified_text

    start = time.perf_counter()
    s = dataset_summary(default_data_path() if args.file is None else args.file,
                        verify=args.verify)
    table = Table(title=s["file"], show_header=False)
    a = s["atoms_per_structure"]
    e, f = s["energy_per_atom_eV"], s["force_norm_eV_per_A"]
    rows = [("structures", f"{s['structures']:,}"), ("atoms", f"{s['atoms']:,}"),
            ("atoms / structure", f"min {a[0]}  mean {a[1]:.1f}  max {a[2]}"),
            ("elements", "  ".join(f"{k}:{v}" for k, v in s["elements"].items())),
            ("energy / atom (eV)", f"min {e[0]:.3f}  mean {e[1]:.3f}  max {e[2]:.3f}  "
                                   f"std {e[3]:.3f}"),
            ("|F| (eV/Å)", f"mean {f[1]:.3f}  max {f[2]:.2f}  rms component {f[3]:.3f}"),
            ("with stress", f"{s['with_stress']:,}")]
    if s["stress_abs_mean_eV_per_A3"] is not None:
        rows.append(("mean |σ| (eV/Å³)", f"{s['stress_abs_mean_eV_per_A3']:.4f}"))
    rows += [(k, str(v)) for k, v in s["metadata"].items()]
    if args.verify:
        rows.append(("verified", verified_text(s, time.perf_counter() - start)))
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from mlip_scaling.data.convert import convert_dataset

    out = Path(args.output)
    n = convert_dataset(Path(args.input), out, args.format, args.oracle, args.force)
    print(f"wrote {n} structures to {out}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    """Generate the dataset described by ``args``."""
    from mlip_scaling.data.generate import generate_dataset

    start = time.perf_counter()
    out = generate_dataset(args.oracle, args.structures, args.out, seed=args.seed,
                           workers=args.workers, recipe=args.recipe, progress=not args.quiet,
                           chunk_size=args.chunk_size, elements=args.elements)
    print(f"wrote {args.structures} structures to {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _add_generate(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``generate`` subcommand."""
    from mlip_scaling.data.generate import DEFAULT_STRUCTURES, RECIPES

    parser = sub.add_parser("generate", help="generate and label structures with an oracle",
                            formatter_class=fmt)
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
    parser.set_defaults(func=_generate)


def _add_info(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``info`` subcommand."""
    p = sub.add_parser("info", help="counts, elements and label statistics", formatter_class=fmt)
    p.add_argument("file", nargs="?", default=None,
                   help="dataset file (default: the embedded dataset shipped with the package)")
    p.add_argument("--verify", action="store_true",
                   help="also check the content hash and every structure's geometry")
    p.set_defaults(func=_info)


def _add_convert(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``convert`` subcommand."""
    p = sub.add_parser("convert", help="convert between extxyz / ASE db / aselmdb / .h5 / "
                                       "anything ase.io writes (CIF, POSCAR for pymatgen)",
                       formatter_class=fmt)
    p.add_argument("input", help="dataset file: extxyz, ASE db, aselmdb or .h5")
    p.add_argument("output", type=output_file,
                   help="output file: .h5 (store) or anything ase.io writes")
    p.add_argument("--oracle", default=None, help="oracle name to record in the store")
    p.add_argument("--format", default=None,
                   help="ase.io format for non-.h5 outputs (default: from the output name, "
                        "e.g. .cif, POSCAR; extxyz when the name implies none)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=_convert)


def _parser() -> argparse.ArgumentParser:
    return subcommand_parser("mlip-data", __doc__, (_add_info, _add_convert, _add_generate))


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mlip-data``."""
    return run_subcommand(_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
