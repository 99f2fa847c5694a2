"""NVT molecular dynamics with a Langevin thermostat.

    python examples/md_nvt.py model.pt --temperature 600 --steps 2000
    python examples/md_nvt.py model.pt --structure POSCAR --supercell 2 2 2 --traj md.traj
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.io.trajectory import Trajectory
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.errors import DataError, cli_entry


def starting_structure(args: argparse.Namespace) -> Atoms:
    """The structure file (repeated by ``--supercell``) or an fcc crystal of ``--element``."""
    if args.structure:
        try:
            atoms = ase.io.read(args.structure)
        except Exception as exc:
            raise DataError(f"{args.structure}: cannot read structure ({exc})") from None
    else:
        atoms = bulk(args.element, cubic=True)
    return atoms * tuple(args.supercell)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help="model file (.pt)")
    parser.add_argument("--structure", help="structure file (any format ase reads)")
    parser.add_argument("--element", default="Cu", help="element of the default fcc crystal")
    parser.add_argument("--supercell", type=int, nargs=3, default=[3, 3, 3])
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--friction", type=float, default=0.01, help="1/fs")
    parser.add_argument("--log-every", type=int, default=100, help="steps between log lines")
    parser.add_argument("--traj", help="write frames to this ASE trajectory")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    atoms = starting_structure(args)
    atoms.calc = ScalingCalculator(args.model, device=args.device, dtype=args.dtype)
    rng = np.random.default_rng(args.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, timestep=args.timestep * units.fs, temperature_K=args.temperature,
                   friction=args.friction / units.fs, fixcm=False, rng=rng)
    if args.traj:
        dyn.attach(Trajectory(args.traj, "w", atoms), interval=args.log_every)
    start = time.perf_counter()

    def log() -> None:
        n = len(atoms)
        print(f"t {dyn.get_time() / units.fs:8.1f} fs  T {atoms.get_temperature():7.1f} K  "
              f"Epot {atoms.get_potential_energy() / n:9.5f} eV/atom  "
              f"Etot {atoms.get_total_energy() / n:9.5f} eV/atom", flush=True)

    dyn.attach(log, interval=args.log_every)
    dyn.run(args.steps)
    elapsed = time.perf_counter() - start
    print(f"{args.steps} steps of {len(atoms)} atoms in {elapsed:.1f} s "
          f"({args.steps / elapsed:.1f} steps/s, {args.steps * len(atoms) / elapsed:.3g} "
          f"atom-steps/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
