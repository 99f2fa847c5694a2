"""torch-sim NVE speed of ScalingTorchSimModel on fcc Cu (CPU or GPU).

    python benchmarks/bench_torchsim.py                    # 256 atoms, transformer preset
    python benchmarks/bench_torchsim.py --model model.pt --atoms 256 --steps 50

Reports MD steps/s of ``torch_sim.integrate`` (NVE, 1 fs) and the time per call spent
building the model's batch (neighbour lists and structure checks) outside the model.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
import torch_sim as ts
from bench_md import build_potential, copper

from mlip_scaling.calculators.torchsim import ScalingTorchSimModel


def nve_steps_per_second(model: ScalingTorchSimModel, atoms, steps: int) -> float:
    """MD steps/s of a torch-sim NVE run of ``steps`` steps after a 2-step warm-up."""
    kwargs = {"model": model, "integrator": ts.nve, "temperature": 300.0, "timestep": 0.001}
    ts.integrate(system=[atoms], n_steps=2, **kwargs)
    start = time.perf_counter()
    ts.integrate(system=[atoms], n_steps=steps, **kwargs)
    return steps / (time.perf_counter() - start)


def batch_seconds(model: ScalingTorchSimModel, atoms, repeats: int = 20) -> float:
    """Seconds per call of the model's batch building (neighbour lists and checks)."""
    state = ts.io.atoms_to_state([atoms], model.device, model.dtype)
    model._batch(state)
    start = time.perf_counter()
    for _ in range(repeats):
        model._batch(state)
    return (time.perf_counter() - start) / repeats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file or preset (default: transformer preset)")
    parser.add_argument("--atoms", type=int, default=256, help="atoms in the Cu cell")
    parser.add_argument("--steps", type=int, default=30, help="timed MD steps")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--dtype", default="float64", help="float32 or float64")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = ScalingTorchSimModel(build_potential(args.model), device=args.device,
                                 dtype=args.dtype)
    atoms = copper(args.atoms)
    rate = nve_steps_per_second(model, atoms, args.steps)
    batch = batch_seconds(model, atoms)
    print(f"{args.atoms} atoms, {args.device}, {args.dtype}: {rate:.2f} NVE steps/s; "
          f"batch building {batch * 1e3:.2f} ms per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
