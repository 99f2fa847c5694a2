"""Direct-force EquiformerV2 (``eqv2d-<size>``) against the conservative ladder (``eqv2-<size>``,
same backbone): training-step time, force error at equal CPU time, NVE energy drift.

    python benchmarks/bench_eqv2_direct.py steps                  # step times, one process
    python benchmarks/bench_eqv2_direct.py compile eqv2d-9.2k     # torch.compile of the step
    python benchmarks/bench_eqv2_direct.py accuracy --budget 150  # equal CPU time, then NVE
    python benchmarks/bench_eqv2_direct.py ab --base /tmp/base    # mlip-train step vs a checkout

``steps``: the training step of ``bench_eqv2.py`` (float32, a batch of 4 default-dataset
structures, loss on energy, forces and stress, backward); the conservative model needs the
double backward, the direct one a single backward. Median CPU time, the models interleaved.
``compile``: the same step with the energy model ``torch.compile``d as ``mlip-train --compile``
does (``module.compile()``), over 4 batches of different shapes; compile time, step time
against eager and the largest output difference. ``accuracy``: both models train for the same
CPU time on the Cu-Ni EMT set of ``bench_train.py`` (its loop, lr, EMA and loss), test MAEs,
then an NVE run of each (float64, ``scaling/downstream/md.py``: drift in meV/atom/ps with its
standard error, stability) and EMT's own. ``ab``: the ``mlip-train`` step as the issue defines
it, (CPU time of 25 steps - of 5 steps) / 20, 1 thread, best of 2 alternated runs, of this
checkout and of ``--base`` (another checkout, e.g. ``git worktree add /tmp/base d290c95``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from ase.build import bulk

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import bench_eqv2  # noqa: E402
import bench_train  # noqa: E402
import cuni_dataset  # noqa: E402

from mlip_scaling import keys  # noqa: E402
from mlip_scaling.calculators.ase import ScalingCalculator  # noqa: E402
from mlip_scaling.data.oracles import get_oracle  # noqa: E402
from mlip_scaling.scaling.downstream.md import md_errors  # noqa: E402

PAIRS = (("eqv2-5.6k", "eqv2d-9.2k"), ("eqv2-57k", "eqv2d-81k"))


def interleaved_ms(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median CPU time (ms) per call of each step, one warm-up each, calls interleaved so
    that the load of other processes hits all alike."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.process_time()
            step()
            times[name].append(1e3 * (time.process_time() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def cmd_steps(args: argparse.Namespace) -> dict:
    names = [n for pair in PAIRS for n in pair]
    ms = interleaved_ms({n: bench_eqv2.train_step(n) for n in names}, args.repeats)
    print(f"training step, CPU ms (median of {args.repeats}, 1 thread)")
    for conservative, direct in PAIRS:
        print(f"  {conservative:<11} {ms[conservative]:8.1f}   {direct:<11} {ms[direct]:8.1f}"
              f"   conservative / direct {ms[conservative] / ms[direct]:5.2f}x")
    return ms


def _direct_step(name: str, data: dict) -> Callable[[], dict]:
    """Closure over a seed-0 float32 potential of ``name``: one training step on ``data``,
    returning the (detached) predictions."""
    potential = bench_eqv2._potential(name, torch.float32).train()

    def step(batch: dict = data) -> dict:
        out = potential(batch, create_graph=True)
        loss = (out[keys.ENERGY].square().mean() + out[keys.FORCES].square().mean()
                + out[keys.STRESS].square().mean())
        loss.backward()
        potential.zero_grad(set_to_none=True)
        return {k: v.detach() for k, v in out.items()}

    step.potential = potential
    return step


def cmd_compile(args: argparse.Namespace) -> dict:
    atoms = bench_eqv2.train_batch(16)
    cutoff = bench_eqv2._potential(args.preset, torch.float32).cutoff
    batches = [bench_eqv2._batch(atoms[4 * k:4 * k + 4], cutoff, torch.float32)
               for k in range(4)]
    step = _direct_step(args.preset, batches[0])
    eager = [step(b) for b in batches]
    eager_ms = statistics.median(_cycle_ms(step, batches, args.repeats))
    start = time.process_time()
    step.potential.model.compile()
    compiled = [step(b) for b in batches]  # compiles, and recompiles for dynamic shapes
    compile_s = time.process_time() - start
    compiled_ms = statistics.median(_cycle_ms(step, batches, args.repeats))
    diff = max(float((c[k] - e[k]).abs().max() / e[k].abs().max())
               for c, e in zip(compiled, eager) for k in (keys.ENERGY, keys.FORCES, keys.STRESS))
    print(f"{args.preset}: eager {eager_ms:.1f} ms/step, compiled {compiled_ms:.1f} ms/step "
          f"({eager_ms / compiled_ms:.2f}x), compile {compile_s:.0f} CPU-s, largest relative "
          f"output difference {diff:.1e}")
    return {"eager_ms": eager_ms, "compiled_ms": compiled_ms, "compile_s": compile_s,
            "max_rel_diff": diff}


def _cycle_ms(step: Callable, batches: list[dict], repeats: int) -> list[float]:
    out = []
    for k in range(repeats * len(batches)):
        start = time.process_time()
        step(batches[k % len(batches)])
        out.append(1e3 * (time.process_time() - start))
    return out


def md_cell() -> object:
    """32-atom fcc Cu-Ni (every second atom Ni), rattled by 0.05 Å: the NVE start."""
    atoms = bulk("Cu", "fcc", a=3.57, cubic=True) * (2, 2, 2)
    atoms.symbols[::2] = "Ni"
    atoms.rattle(0.05, seed=1)
    return atoms


def cmd_accuracy(args: argparse.Namespace) -> dict:
    paths = cuni_dataset.dataset_paths(args.train_size, args.test_size)
    train_atoms, test_atoms = cuni_dataset.load(paths[0]), cuni_dataset.load(paths[1])
    settings = argparse.Namespace(budget=args.budget, points=args.points, weights=[2.5, 20.0, 5.0],
                                  lr=5e-3, batch_size=8, seed=0)
    results = {}
    for name in args.models:
        cutoff = bench_eqv2._potential(name, torch.float32).cutoff
        train = bench_train.prepare(train_atoms, cutoff)
        test = bench_train.prepare(test_atoms, cutoff)
        potential = bench_train.build(name, {}, train)
        curve = bench_train.train_for(potential, train, test, settings, name)
        calc = ScalingCalculator(potential.eval(), device="cpu", dtype="float64")
        md = md_errors(md_cell(), calc, get_oracle("emt"), temperature_K=args.temperature,
                       steps=args.md_steps, dt_fs=args.dt)
        print(f"  {name} NVE ({args.md_steps} x {args.dt} fs, {args.temperature:.0f} K): drift "
              f"{md['md_drift']:.3g} ± {md['md_drift_se']:.2g} meV/atom/ps, stability "
              f"{md['md_stability']:.2f}; EMT's own drift {md['md_oracle_drift']:.3g}", flush=True)
        results[name] = {"curve": curve, "md": md}
    return results


def _cpu_seconds(argv: list[str], checkout: Path) -> float:
    """CPU time (s, user + system) of ``argv`` run with ``checkout`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, check=True, cwd=checkout, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def train_step_ms(model: str, checkout: Path) -> float:
    """(CPU time of mlip-train for 25 steps - for 5 steps) / 20, in ms."""
    seconds = []
    for steps in (25, 5):
        with tempfile.TemporaryDirectory() as out:
            argv = [sys.executable, "-m", "mlip_scaling.training.cli", "--model", model,
                    "--batch-size", "4", "--lr", "5e-3", "--threads", "1", "--train-size", "96",
                    "--max-val-structures", "8", "--epochs", "100", "--max-steps", str(steps),
                    "--device", "cpu", "--out", str(Path(out) / "run")]
            seconds.append(_cpu_seconds(argv, checkout))
    return 1e3 * (seconds[0] - seconds[1]) / 20


def cmd_ab(args: argparse.Namespace) -> dict:
    cases = [(m, ROOT) for pair in PAIRS for m in pair] + [(c, args.base) for c, _ in PAIRS]
    best: dict[str, float] = {}
    for _ in range(args.runs):
        for model, checkout in cases:
            key = f"{model}@{'base' if checkout == args.base else 'now'}"
            best[key] = min(best.get(key, float("inf")), train_step_ms(model, checkout))
            print(f"  {key}: {best[key]:.1f} ms", flush=True)
    for conservative, direct in PAIRS:
        base = best[f"{conservative}@base"]
        print(f"{conservative}: base {base:.1f} ms, now {best[conservative + '@now']:.1f} ms "
              f"({base / best[conservative + '@now']:.2f}x); {direct}: "
              f"{best[direct + '@now']:.1f} ms ({base / best[direct + '@now']:.2f}x of base)")
    return best


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("steps", help="step times of both ladders in one process")
    s.add_argument("--repeats", type=int, default=7)
    c = sub.add_parser("compile", help="torch.compile of a direct model's training step")
    c.add_argument("preset", nargs="?", default="eqv2d-9.2k")
    c.add_argument("--repeats", type=int, default=3, help="passes over the 4 batches")
    a = sub.add_parser("accuracy", help="equal CPU time on Cu-Ni EMT, then NVE drift")
    a.add_argument("--models", nargs="+", default=["eqv2-5.6k", "eqv2d-9.2k"])
    a.add_argument("--budget", type=float, default=150.0, help="CPU-s of training per model")
    a.add_argument("--points", type=int, default=3, help="test checkpoints (x2 apart)")
    a.add_argument("--train-size", type=int, default=400)
    a.add_argument("--test-size", type=int, default=100)
    a.add_argument("--md-steps", type=int, default=1000)
    a.add_argument("--dt", type=float, default=2.0, help="MD time step, fs")
    a.add_argument("--temperature", type=float, default=600.0, help="K")
    b = sub.add_parser("ab", help="mlip-train step here and in another checkout")
    b.add_argument("--base", type=Path, required=True, help="checkout of the baseline commit")
    b.add_argument("--runs", type=int, default=2, help="alternated runs (best kept)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CPU time of this process, 1 thread", flush=True)
    command = {"steps": cmd_steps, "compile": cmd_compile, "accuracy": cmd_accuracy,
               "ab": cmd_ab}[args.command]
    results = command(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
