"""Train a small potential from Python, then use it as an ASE calculator.

    python examples/train.py                                  # embedded dataset, 5 epochs
    python examples/train.py --data my.extxyz --model transformer --params 1e5 --epochs 20

The same run from the shell: ``mlip-train --data my.extxyz --params 1e5 --epochs 20``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ase.build import bulk

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.errors import cli_entry
from mlip_scaling.training.config import TrainConfig
from mlip_scaling.training.runner import run_training


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=None, help="dataset file (default: embedded)")
    parser.add_argument("--model", default="transformer", help="family or preset name")
    parser.add_argument("--params", type=float, default=None, help="nearest preset size")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/example", help="run directory")
    args = parser.parse_args(argv)

    cfg = TrainConfig(model=args.model, params=args.params, data=args.data, epochs=args.epochs,
                      out=args.out, resume=True, amp="auto").validate()
    result = run_training(cfg)  # resumes if the run directory already holds a run
    print(f"model file {result['export']}: validation force MAE "
          f"{result['metrics']['force_mae']:.4f} eV/Å after {result['train']['steps']} steps")

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * 2
    atoms.rattle(0.05, seed=0)
    atoms.calc = ScalingCalculator(result["export"])
    print(f"Cu32: E = {atoms.get_potential_energy():.3f} eV, "
          f"max |F| = {abs(atoms.get_forces()).max():.3f} eV/Å")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
