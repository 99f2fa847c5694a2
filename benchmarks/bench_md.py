"""MD speed of ScalingCalculator next to ASE EMT, asap3 EMT and MACE (same run, same cells).

    python benchmarks/bench_md.py                      # default: transformer preset ~ MACE size
    python benchmarks/bench_md.py --model model.pt --threads 2 --json bench.json

Reports (fcc Cu, velocity-Verlet steps, energy + forces per step):
1. MD steps/s and atom-steps/s for 256- and 2048-atom cells, float32 and float64;
2. time per atom and step from 64 to 16,000 atoms (flat for a linear-scaling model);
3. at 256 atoms, the time outside the model: neighbour list, conversion/checks, ASE;
4. the same on the GPU when CUDA is available.
MACE (72,848 parameters, 2 layers, 32x0e+32x1o, max_ell 3, random weights) runs in a
subprocess of the interpreter given by ``--mace-python`` (a venv with mace-torch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.errors import ConfigError, cli_entry
from mlip_scaling.models.potential import Potential

MACE_PARAMS = 72_848
#: glibc settings that keep freed memory for reuse instead of unmapping every large tensor
#: (page faults otherwise make the time per atom grow with size above ~2000 atoms)
MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**36),
                 "MALLOC_TOP_PAD_": str(2**30)}
#: atoms -> repeat of the 4-atom cubic fcc cell
CELLS = {64: (2, 2, 4), 256: (4, 4, 4), 1024: (4, 8, 8), 2048: (8, 8, 8), 4000: (10, 10, 10),
         16000: (10, 10, 40)}

MACE_SCRIPT = r"""
import json, sys, time
import numpy as np
import torch
torch.serialization.add_safe_globals([slice])  # e3nn 0.4's shipped constants, torch >= 2.6
from ase import units
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from e3nn import o3
from mace import modules
from mace.calculators import MACECalculator

threads, cells, steps = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
torch.set_num_threads(threads)
out = []
for dtype in ("float32", "float64"):
    torch.set_default_dtype(getattr(torch, dtype))
    torch.manual_seed(0)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.MACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, interaction_cls=block,
        interaction_cls_first=block, num_interactions=2, num_elements=1,
        hidden_irreps=o3.Irreps("32x0e+32x1o"), MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.array([-3.0]), avg_num_neighbors=40.0, atomic_numbers=[29],
        correlation=3, gate=torch.nn.functional.silu)
    calc = MACECalculator(models=model, device="cpu", default_dtype=dtype)
    for rep, n_steps in zip(cells, steps):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * tuple(rep)
        atoms.calc = calc
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
        dyn = VelocityVerlet(atoms, timestep=units.fs)
        dyn.run(1)
        start = time.perf_counter()
        dyn.run(n_steps)
        out.append({"dtype": dtype, "atoms": len(atoms),
                    "step_s": (time.perf_counter() - start) / n_steps})
print("RESULT " + json.dumps(out))
"""


def copper(n_atoms: int) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * CELLS[n_atoms]
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    return atoms


def md_step_time(atoms: Atoms, calc, steps: int, warmup: int = 2) -> float:
    """Seconds per velocity-Verlet step (1 fs) after ``warmup`` steps."""
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=units.fs)
    dyn.run(warmup)
    start = time.perf_counter()
    dyn.run(steps)
    return (time.perf_counter() - start) / steps


def build_potential(spec: str | None) -> Potential | str:
    """A model file path as is; else a preset (default: the transformer nearest MACE's size)
    with random weights for Cu."""
    if spec and Path(spec).is_file():
        return spec
    from mlip_scaling.models import registry

    try:
        name = spec or registry.nearest_preset(MACE_PARAMS, "transformer")
        _, family, config = registry.resolve_model(name)
    except ImportError:  # the full preset table is absent: EquiformerV2 presets still work
        from mlip_scaling.models.equiformer_v2.presets import EQV2_PRESETS

        if spec not in EQV2_PRESETS:
            raise ConfigError(f"no preset {spec!r} available; pass --model PATH") from None
        name, family, config = spec, "eqv2", dict(EQV2_PRESETS[spec])
    except ValueError as exc:
        raise ConfigError(f"no model: {exc}; pass --model PATH") from None
    torch.manual_seed(0)
    model = registry.build_model(family, config)
    print(f"model: preset {name} ({family}, random weights)")
    return Potential(model, family, config, species=[29], reference_energies={29: -3.0})


class Timer:
    """Wraps ``owner.name`` to accumulate its wall time."""

    def __init__(self, owner, name: str) -> None:
        self.total, self.owner, self.name = 0.0, owner, name
        self.inner: Callable = getattr(owner, name)
        setattr(owner, name, self)

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.total += time.perf_counter() - start

    def remove(self) -> None:
        setattr(self.owner, self.name, self.inner)


def overhead(potential, device: str, dtype: str, steps: int) -> dict[str, float]:
    """Per-step time split at 256 atoms: model, neighbour list, calculator rest, ASE."""
    calc = ScalingCalculator(potential, device=device, dtype=dtype)
    atoms = copper(256)
    md_step_time(atoms, calc, 2)
    timers = {name: Timer(obj, attr) for name, obj, attr in (
        ("model", calc._runner, "forward"), ("neighbours", calc, "_neighbors"),
        ("calculator", calc, "calculate"))}
    step = md_step_time(atoms, calc, steps, warmup=0)
    for timer in timers.values():
        timer.remove()
    per = {name: t.total / steps for name, t in timers.items()}
    return {"step": step, "model": per["model"], "neighbours": per["neighbours"],
            "conversion": per["calculator"] - per["model"] - per["neighbours"],
            "ase": step - per["calculator"]}


def run_mace(python: str, threads: int, sizes: Sequence[int], steps: Sequence[int]) -> list:
    if not Path(python).is_file():
        print(f"MACE skipped: no interpreter at {python} (a venv with mace-torch)")
        return []
    cmd = [python, "-c", MACE_SCRIPT, str(threads), json.dumps([CELLS[n] for n in sizes]),
           json.dumps(list(steps))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"MACE skipped: subprocess failed ({tail})")
        return []
    return json.loads(lines[-1][len("RESULT "):])


def row(code: str, dtype: str, n: int, seconds: float) -> dict:
    print(f"{code:<34} {dtype:<8} {n:>6} {1 / seconds:10.2f} {n / seconds:14.4g} "
          f"{1e6 * seconds / n:10.2f}", flush=True)
    return {"code": code, "dtype": dtype, "atoms": n, "step_s": seconds}


def header(title: str) -> None:
    print(f"\n== {title}")
    print(f"{'code':<34} {'dtype':<8} {'atoms':>6} {'steps/s':>10} {'atom-steps/s':>14} "
          f"{'µs/atom':>10}")


def speed_table(potential, device: str, args) -> list[dict]:
    rows = []
    header(f"MD speed on {device} ({args.threads} threads)")
    for n, steps in ((256, args.steps), (2048, max(2, args.steps // 8))):
        for dtype in ("float32", "float64"):
            calc = ScalingCalculator(potential, device=device, dtype=dtype)
            rows.append(row("mlip-scaling", dtype, n, md_step_time(copper(n), calc, steps)))
        if device == "cpu":
            rows.append(row("ASE EMT", "float64", n, md_step_time(copper(n), EMT(), steps)))
            rows += asap_row(n, steps)
    if device == "cpu":
        for r in run_mace(args.mace_python, args.threads, (256, 2048),
                          (max(2, args.steps // 4), 2)):
            rows.append(row(f"MACE ({MACE_PARAMS:,} params)", r["dtype"], r["atoms"],
                            r["step_s"]))
    return rows


def asap_row(n: int, steps: int) -> list[dict]:
    try:
        from asap3 import EMT as AsapEMT
    except ImportError:
        print("asap3 EMT skipped: asap3 is not installed")
        return []
    return [row("asap3 EMT", "float64", n, md_step_time(copper(n), AsapEMT(), steps * 10))]


def scaling_table(potential, device: str, args) -> list[dict]:
    header(f"time per atom vs size on {device} (float32)")
    rows = []
    calc = ScalingCalculator(potential, device=device, dtype="float32")
    for n in args.sizes:
        steps = max(2, int(args.steps * 256 / n))
        atoms = copper(n)
        md_step_time(atoms, calc, 1)
        timer = Timer(calc._runner, "forward")
        rows.append(row("mlip-scaling", "float32", n, md_step_time(atoms, calc, steps, 0)))
        timer.remove()
        rows[-1]["outside_model_s"] = rows[-1]["step_s"] - timer.total / steps
        print(f"{'':<34} outside the model: {1e6 * rows[-1]['outside_model_s'] / n:.2f} µs/atom")
    return rows


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", help="model file or preset (default: transformer near "
                        f"{MACE_PARAMS:,} params)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=40, help="MD steps at 256 atoms")
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(CELLS),
                        choices=sorted(CELLS), help="cell sizes of the per-atom table")
    parser.add_argument("--mace-python", default=os.environ.get(
        "MACE_PYTHON", "/work/venvs/mace/bin/python"), help="python of a mace-torch venv")
    parser.add_argument("--json", help="write all measurements to this JSON file")
    parser.add_argument("--malloc-tuning", action="store_true",
                        help="re-run under glibc settings that keep freed memory (Linux)")
    return parser.parse_args(argv)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.malloc_tuning and any(os.environ.get(k) != v for k, v in MALLOC_TUNING.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_TUNING})
    print(f"glibc malloc tuning: {'on' if 'MALLOC_MMAP_THRESHOLD_' in os.environ else 'off'}")
    torch.set_num_threads(args.threads)
    potential = build_potential(args.model)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report: dict = {"threads": args.threads, "speed": [], "scaling": [], "overhead": {}}
    for device in devices:
        report["speed"] += speed_table(potential, device, args)
        report["scaling"] += scaling_table(potential, device, args)
        for dtype in ("float32", "float64"):
            split = overhead(potential, device, dtype, args.steps)
            report["overhead"][f"{device}/{dtype}"] = split
            outside = 1 - split["model"] / split["step"]
            print(f"\n256 atoms, {device} {dtype}: step {1e3 * split['step']:.2f} ms = model "
                  f"{1e3 * split['model']:.2f} + neighbour list {1e3 * split['neighbours']:.2f}"
                  f" + conversion/checks {1e3 * split['conversion']:.2f} + ASE "
                  f"{1e3 * split['ase']:.2f} ms -> {100 * outside:.1f} % outside the model")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
