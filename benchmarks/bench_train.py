"""Accuracy against training time: the package's models next to a same-size MACE.

    python benchmarks/bench_train.py                       # make bench: 120 s per model
    python benchmarks/bench_train.py --budget 300 --mace-budget 1200 --points 5  # FORCES.md
    python benchmarks/bench_train.py --budget 1350 --mace-budget 5400 --points 6  # long run
    python benchmarks/bench_train.py --set moment_channels=8 --weights 1 50 5 --no-mace

Every model trains for ``--budget`` seconds (MACE for ``--mace-budget``), counted as CPU
time of its own process with one thread (``time.process_time``: the wall-clock time of an
idle core, and not shortened when other jobs share the machine); MACE trains in parallel
with the package's models, so two cores run both. Data: one Cu-Ni EMT dataset
(:mod:`cuni_dataset`, generated once into the cache folder). Loss: the same for all,
``w_E·MAE(E/atom) + w_F·mean|ΔF| + w_S·stress``, with AdamW, a cosine learning
rate over the time budget and an EMA of the weights. Test energy MAE (meV/atom) and force
MAE (meV/Å, per component) are measured at log-spaced training times (evaluation time is
not counted). Printed: the curves side by side, the training time each model needed to
reach MACE's final force MAE (as a fraction of MACE's budget), and the time of one
energy + forces + stress call on a 256-atom Cu-Ni cell (float32, CPU time). MACE trains in
a subprocess of ``MACE_PYTHON`` (see :mod:`mace_train`); one run, one seed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from ase import Atoms
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).parent))
import cuni_dataset  # noqa: E402

from mlip_scaling import keys  # noqa: E402
from mlip_scaling.accuracy import LossWeights, add_sums, error_sums, finish_metrics  # noqa: E402
from mlip_scaling.data.atomic_data import AtomicData, collate, from_atoms  # noqa: E402
from mlip_scaling.data.neighbors import NeighborListTransform  # noqa: E402
from mlip_scaling.models import registry  # noqa: E402
from mlip_scaling.models.potential import Potential  # noqa: E402
from mlip_scaling.procs import keep_freed_memory, preexec_die_with_parent  # noqa: E402
from mlip_scaling.training.ema import EMA  # noqa: E402
from mlip_scaling.training.loss import loss_terms, total_loss  # noqa: E402
from mlip_scaling.training.normalization import energy_scale, fit_reference_energies  # noqa: E402

HERE = Path(__file__).parent


def prepare(structures: Sequence[Atoms], cutoff: float) -> list[AtomicData]:
    """Labelled float32 data dicts with neighbour lists."""
    transform = NeighborListTransform(cutoff)
    out = []
    for atoms in structures:
        data = transform(from_atoms(atoms, labels=True))
        out.append({k: v.float() if v.is_floating_point() else v for k, v in data.items()})
    return out


def build(name: str, overrides: dict, train: list[AtomicData]) -> Potential:
    """Preset ``name`` (with ``overrides``) wrapped with fitted reference energies and scale."""
    family, config = registry.get_preset(name)
    config = {**config, **overrides}
    species = sorted({int(z) for d in train for z in d[keys.ATOMIC_NUMBERS].tolist()})
    refs = fit_reference_energies(train, species)
    torch.manual_seed(0)
    model = registry.build_model(family, config)
    return Potential(model, family, config, species, refs, scale=energy_scale(train, refs))


def evaluate(potential: Potential, items: list[AtomicData], batch: int = 16) -> tuple[float, float]:
    """(energy MAE meV/atom, force MAE meV/Å per component) of ``potential`` on ``items``."""
    sums: dict[str, float] = {}
    for k in range(0, len(items), batch):
        data = collate(items[k:k + batch])
        pred = potential(data, compute_forces=True, compute_stress=False)
        add_sums(sums, error_sums(pred, data))
    metrics = finish_metrics(sums)
    return 1e3 * metrics["energy_mae"], 1e3 * metrics["force_mae"]


def lr_at(frac: float, step: int, lr: float, warmup_steps: int = 20) -> float:
    """Cosine from ``lr`` to ``lr/100`` over the time fraction ``frac``, linear warm-up."""
    cosine = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    return lr * min(1.0, (step + 1) / warmup_steps) * cosine


def train_for(potential: Potential, train: list[AtomicData], test: list[AtomicData],
              args: argparse.Namespace, label: str) -> list[dict]:
    """Train for ``args.budget`` s; the test curve at ``checkpoints(args.budget)``."""
    weights = LossWeights(*args.weights)
    opt = torch.optim.AdamW(potential.model.parameters(), lr=args.lr, weight_decay=1e-3)
    ema = EMA(potential, 0.999)
    gen = torch.Generator().manual_seed(args.seed)
    marks, curve, steps, clock = checkpoints(args.budget, args.points), [], 0, 0.0
    while marks:
        order = torch.randperm(len(train), generator=gen).tolist()
        for k in range(0, len(order) - args.batch_size + 1, args.batch_size):
            start = time.process_time()
            for group in opt.param_groups:
                group["lr"] = lr_at(clock / args.budget, steps, args.lr)
            data = collate([train[i] for i in order[k:k + args.batch_size]])
            potential.train()
            pred = potential(data, compute_forces=True, compute_stress=True, create_graph=True)
            loss = total_loss(loss_terms(pred, data), weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(potential.model.parameters(), 1.0)
            opt.step()
            ema.update(potential)
            steps += 1
            clock += time.process_time() - start
            if clock >= marks[0]:
                curve.append(_checkpoint(potential, ema, test, clock, steps, label))
                marks = [m for m in marks if m > clock]
                if not marks:
                    break
    ema.copy_to(potential)
    return curve


def _checkpoint(potential: Potential, ema: EMA, test: list[AtomicData], clock: float,
                steps: int, label: str) -> dict:
    live = {k: v.clone() for k, v in potential.state_dict().items()}
    ema.copy_to(potential)
    potential.eval()
    e_mae, f_mae = evaluate(potential, test)
    potential.load_state_dict(live)
    print(f"  {label} t={clock:7.1f}s steps={steps:6d} E {e_mae:7.2f} meV/atom "
          f"F {f_mae:7.2f} meV/A", flush=True)
    return {"t": clock, "steps": steps, "energy_mae": e_mae, "force_mae": f_mae}


def checkpoints(budget: float, points: int) -> list[float]:
    """``points`` log-spaced training times (s) ending at ``budget``, each a factor 2 apart
    at most."""
    return [budget / 2 ** (points - 1 - k) for k in range(points)]


def cuni_cell() -> Atoms:
    """256-atom fcc Cu-Ni (every second atom Ni), rattled by 0.05 Å."""
    atoms = bulk("Cu", "fcc", a=3.57, cubic=True) * (4, 4, 4)
    atoms.symbols[::2] = "Ni"
    atoms.rattle(0.05, seed=0)
    return atoms


def infer_ms(potential: Potential, repeats: int = 5) -> float:
    """Median ms of one energy + forces + stress call on :func:`cuni_cell` (float32)."""
    potential.eval()
    data = NeighborListTransform(potential.cutoff)(from_atoms(cuni_cell(), labels=False,
                                                              dtype=torch.float32))
    potential(data)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        potential(data)
        times.append(time.process_time() - start)
    return 1e3 * statistics.median(times)


def start_mace(paths: tuple[Path, Path], args: argparse.Namespace) -> subprocess.Popen | None:
    """Start :mod:`mace_train` in ``args.mace_python`` (it trains while ours does)."""
    if args.no_mace or not os.path.exists(args.mace_python):
        print(f"MACE skipped ({'--no-mace' if args.no_mace else 'no ' + args.mace_python}; "
              "set MACE_PYTHON to a mace-torch venv)")
        return None
    marks = ",".join(f"{m:.3f}" for m in checkpoints(args.mace_budget, args.points))
    cmd = [args.mace_python, str(HERE / "mace_train.py"), "--train", str(paths[0]),
           "--test", str(paths[1]), "--budget", str(args.mace_budget), "--checkpoints", marks,
           "--threads", str(args.threads), "--seed", str(args.seed), "--lr", str(args.mace_lr),
           "--batch-size", str(args.mace_batch_size),
           "--weights", ",".join(str(w) for w in args.weights)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=preexec_die_with_parent())


def finish_mace(proc: subprocess.Popen | None) -> dict | None:
    """MACE's curve, parameter count and inference time (None if it failed)."""
    if proc is None:
        return None
    stdout, _ = proc.communicate()
    lines = stdout.splitlines()
    print("\n".join(ln for ln in lines if ln.startswith("  MACE ")))
    results = [ln for ln in lines if ln.startswith("RESULT ")]
    if proc.returncode or not results:
        print(f"MACE failed (exit {proc.returncode})")
        return None
    return json.loads(results[-1][len("RESULT "):])


def time_to(curve: list[dict], target: float) -> float | None:
    """First training time (s) at which the force MAE is <= ``target`` (None if never)."""
    return next((p["t"] for p in curve if p["force_mae"] <= target), None)


def report(results: dict[str, dict], mace_name: str | None) -> None:
    """Print the curves side by side, then time and inference ratios against MACE."""
    names = list(results)
    head = f"{'t/budget':>9}" + "".join(f"{n[:22]:>24}" for n in names)
    print("\ntest MAE  E meV/atom | F meV/A  (training seconds in brackets)\n" + head)
    for k in range(max(len(r["curve"]) for r in results.values())):
        cells = []
        for n in names:
            c = results[n]["curve"]
            p = c[k] if k < len(c) else None
            cells.append(f"{p['energy_mae']:6.1f} | {p['force_mae']:5.1f} ({p['t']:5.0f}s)"
                         if p else "-")
        print(f"{'1/' + str(2 ** (len(results[names[0]]['curve']) - 1 - k)):>9}"
              + "".join(f"{c:>24}" for c in cells))
    if mace_name is None:
        return
    mace = results[mace_name]
    final_f, budget = mace["curve"][-1]["force_mae"], mace["budget"]
    print(f"\nMACE ({mace['params']:,} params): final force MAE {final_f:.1f} meV/A after "
          f"{budget:.0f} s, {mace['infer_ms']:.0f} ms per 256-atom call")
    for n in names:
        if n == mace_name:
            continue
        t = time_to(results[n]["curve"], final_f)
        when = (f"by {t:.0f} s (<= {t / budget:.3f} of MACE's time; checkpoints x2 apart)"
                if t is not None else "not reached")
        print(f"{n} ({results[n]['params']:,} params): MACE's final force MAE reached {when}; "
              f"inference {results[n]['infer_ms']:.1f} ms = "
              f"{mace['infer_ms'] / results[n]['infer_ms']:.1f}x faster")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--budget", type=float, default=120.0,
                   help="training budget per model, CPU seconds of its process")
    p.add_argument("--mace-budget", type=float, default=None, help="MACE's (default --budget)")
    p.add_argument("--models", nargs="+", default=["transformer-57k"], help="package presets")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="model-config overrides (JSON values), e.g. num_radial=16")
    p.add_argument("--train-size", type=int, default=2000, help="training structures")
    p.add_argument("--test-size", type=int, default=300, help="test structures")
    p.add_argument("--points", type=int, default=4, help="checkpoints (log-spaced, x2 apart)")
    p.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (ours)")
    p.add_argument("--batch-size", type=int, default=8, help="structures per step (ours)")
    p.add_argument("--mace-lr", type=float, default=1e-2, help="MACE's peak learning rate")
    p.add_argument("--mace-batch-size", type=int, default=8, help="MACE's structures per step")
    p.add_argument("--weights", type=float, nargs=3, default=[2.5, 20.0, 5.0],
                   metavar=("E", "F", "S"), help="loss weights: energy, force, stress")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per model")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    p.add_argument("--no-mace", action="store_true", help="train only the package's models")
    p.add_argument("--mace-python", default=os.environ.get(
        "MACE_PYTHON", "/work/venvs/mace/bin/python"), help="python of a mace-torch venv")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    args.mace_budget = args.mace_budget or args.budget
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    start = time.perf_counter()
    paths = cuni_dataset.dataset_paths(args.train_size, args.test_size)
    print(f"Cu-Ni EMT dataset {paths[0].parent} ({time.perf_counter() - start:.0f} s); "
          f"{args.threads} thread(s), torch {torch.__version__}", flush=True)
    train_atoms, test_atoms = cuni_dataset.load(paths[0]), cuni_dataset.load(paths[1])
    mace_proc = start_mace(paths, args)
    results: dict[str, dict] = {}
    for name in args.models:
        cutoff = float({**registry.get_preset(name)[1], **overrides}["cutoff"])
        train, test = prepare(train_atoms, cutoff), prepare(test_atoms, cutoff)
        potential = build(name, overrides, train)
        params = sum(p.numel() for p in potential.model.parameters())
        print(f"{name} ({params:,} params{', ' + ' '.join(args.set) if args.set else ''})")
        curve = train_for(potential, train, test, args, name)
        results[name] = {"params": params, "curve": curve, "budget": args.budget,
                         "infer_ms": infer_ms(potential)}
    mace = finish_mace(mace_proc)
    if mace is not None:
        results["MACE"] = {**mace, "budget": args.mace_budget}
    report(results, "MACE" if mace is not None else None)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
