"""Relax a structure together with its cell: FIRE + FrechetCellFilter (Matbench defaults).

    python examples/relax.py model.pt                      # rattled, strained fcc Cu
    python examples/relax.py model.pt --structure POSCAR --fmax 0.02 --out relaxed.extxyz
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.errors import DataError, cli_entry


def starting_structure(args: argparse.Namespace) -> Atoms:
    """The structure file, or a rattled fcc supercell strained by ``--strain``."""
    if args.structure:
        try:
            return ase.io.read(args.structure)
        except Exception as exc:
            raise DataError(f"{args.structure}: cannot read structure ({exc})") from None
    atoms = bulk(args.element, cubic=True) * 2
    strain = np.eye(3) + args.strain * np.array([[1.0, 0.2, 0.0], [0.2, -0.5, 0.1], [0, 0.1, 0.3]])
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.rattle(0.05, seed=0)
    return atoms


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help="model file (.pt)")
    parser.add_argument("--structure", help="structure file (any format ase reads)")
    parser.add_argument("--element", default="Cu", help="element of the default fcc crystal")
    parser.add_argument("--strain", type=float, default=0.03, help="strain of the default cell")
    parser.add_argument("--fmax", type=float, default=0.05, help="force criterion, eV/Å")
    parser.add_argument("--steps", type=int, default=500, help="maximum optimizer steps")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--out", help="write the relaxed structure here")
    return parser.parse_args(argv)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    atoms = starting_structure(args)
    atoms.calc = ScalingCalculator(args.model, device=args.device, dtype=args.dtype)
    n = len(atoms)
    e0, v0 = atoms.get_potential_energy() / n, atoms.get_volume() / n
    print(f"start: {atoms.get_chemical_formula()}  E {e0:.5f} eV/atom  V {v0:.3f} Å^3/atom  "
          f"max|stress| {np.abs(atoms.get_stress()).max():.2e} eV/Å^3")
    optimizer = FIRE(FrechetCellFilter(atoms), logfile=None)
    converged = optimizer.run(fmax=args.fmax, steps=args.steps)
    e1, v1 = atoms.get_potential_energy() / n, atoms.get_volume() / n
    print(f"final: E {e1:.5f} eV/atom  V {v1:.3f} Å^3/atom  "
          f"max|F| {np.linalg.norm(atoms.get_forces(), axis=1).max():.3f} eV/Å  "
          f"max|stress| {np.abs(atoms.get_stress()).max():.2e} eV/Å^3")
    print(f"{'converged' if converged else 'NOT converged'} after {optimizer.nsteps} steps; "
          f"cell lengths {np.round(atoms.cell.lengths(), 4)} Å, "
          f"angles {np.round(atoms.cell.angles(), 2)}°")
    if args.out:
        ase.io.write(args.out, atoms)
        print(f"wrote {args.out}")
    return 0 if converged else 1


if __name__ == "__main__":
    raise SystemExit(main())
