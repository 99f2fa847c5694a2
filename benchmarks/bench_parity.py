"""Parity averaging on the EquiformerV2 ladder: averaged vs plain at equal CPU time.

Trains ladder presets with the demo's settings (examples/demo_eqv2.yaml ``train_args``) on
the embedded dataset, once with ``parity_average: true`` for ``--steps`` optimiser steps
and once plain (SO(3)-equivariant only) for twice as many steps (a plain step costs about
half an averaged one), for several seeds, and prints validation/test loss, energy and
force MAE and the mirror-image error (the point-inverted test structure against the
original) as mean ± SE over seeds, as a markdown table.

    nice -n 5 python benchmarks/bench_parity.py --models eqv2-5.6k --sizes 96 192 --jobs 2

Each run is one ``mlip-train`` process with 1 thread; its CPU time is measured. Results
accumulate in ``--out``/results.json (runs already there are not repeated).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import yaml

from mlip_scaling import keys
from mlip_scaling.checkpoint import load_checkpoint, potential_from_dict
from mlip_scaling.data.atomic_data import collate, from_atoms
from mlip_scaling.data.dataset import atoms_at, open_for_model, test_set
from mlip_scaling.data.embedded import default_data_path
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.data.splits import SplitSpec
from mlip_scaling.data.store import StructureStore
from mlip_scaling.scaling.metrics import test_metrics

ROOT = Path(__file__).resolve().parent.parent
DEMO_PLAN = ROOT / "examples" / "demo_eqv2.yaml"
MAX_TEST = 64
#: the demo's --max-val-structures
MAX_VAL = 32
VARIANTS = ("averaged", "plain")


def demo_train_args() -> list[str]:
    """The demo's extra mlip-train options (batch size, learning rate, threads, ...)."""
    return [str(a) for a in yaml.safe_load(DEMO_PLAN.read_text())["train_args"]]


def train(model: str, size: int, seed: int, variant: str, steps: int, out: Path) -> dict:
    """Train one run; its wall-independent CPU time (s) and the paths it wrote."""
    averaged = variant == "averaged"
    n = steps if averaged else 2 * steps
    run = out / f"{model}_n{size}_s{seed}_{variant}"
    cmd = [sys.executable, "-m", "mlip_scaling.training.cli", "--model", model,
           "--model-config", json.dumps({"parity_average": averaged}),
           "--train-size", str(size), "--max-steps", str(n), "--epochs", str(n),
           "--seed", str(seed), "--out", str(run), "-q", *demo_train_args()]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{run}: mlip-train failed (status {status})")
    return {"run": str(run), "steps": n, "cpu_s": usage.ru_utime + usage.ru_stime}


def _predict(potential, atoms_list) -> tuple[np.ndarray, np.ndarray]:
    """Energies [B] (eV) and forces [N, 3] (eV/Å) of a batch, in the potential's dtype."""
    nl = NeighborListTransform(potential.cutoff)
    batch = collate([nl(from_atoms(a, labels=False, dtype=potential.dtype)) for a in atoms_list])
    out = potential(batch, compute_stress=False)
    return out[keys.ENERGY].detach().numpy(), out[keys.FORCES].detach().numpy()


def mirror_error(potential, atoms_list) -> tuple[float, float]:
    """MAE of energy (eV/atom) and forces (eV/Å) of each structure's point inversion
    (positions negated; a lattice is centrosymmetric, so the cell is kept) against the
    original, whose inverted forces are ``-F``."""
    inverted = [a.copy() for a in atoms_list]
    for a in inverted:
        a.positions = -a.positions
    e_ref, f_ref = _predict(potential, atoms_list)
    e_inv, f_inv = _predict(potential, inverted)
    natoms = np.array([len(a) for a in atoms_list])
    return float(np.mean(np.abs(e_inv - e_ref) / natoms)), float(np.mean(np.abs(f_inv + f_ref)))


def evaluate(run: Path) -> dict:
    """Loss of the final model file in ``run`` on the validation structures its training
    used (the first ``MAX_VAL``), test metrics (first ``MAX_TEST`` test structures) and
    the mirror-image error, float64."""
    path = next(p for p in run.glob("*.pt") if p.name != "last.pt")
    ckpt = load_checkpoint(path)
    source = open_for_model(default_data_path(), ckpt, path)
    test = test_set(ckpt, source, MAX_TEST)
    val = SplitSpec.from_checkpoint(ckpt).indices(len(source), "dataset")["val"][:MAX_VAL]
    potential = potential_from_dict(ckpt).double().eval()
    metrics = test_metrics(potential, source, test)
    val_loss = test_metrics(potential, source, val)["test_loss"]
    mirror_e, mirror_f = mirror_error(potential, [atoms_at(source, i) for i in test])
    return {"val_loss": val_loss, "test_loss": metrics["test_loss"],
            "energy_mae": metrics["energy_mae"], "force_mae": metrics["force_mae"],
            "mirror_energy": mirror_e, "mirror_force": mirror_f}


def one(job: tuple, steps: int, out: Path) -> dict:
    model, size, seed, variant = job
    rec = train(model, size, seed, variant, steps, out)
    torch.set_num_threads(1)
    rec.update(evaluate(Path(rec["run"])))
    return {"model": model, "size": size, "seed": seed, "variant": variant, **rec}


def mean_se(values: list[float], scale: float = 1.0) -> str:
    """``mean ± SE`` of ``values`` times ``scale``."""
    v = [x * scale for x in values]
    if len(set(v)) == 1:  # a setting (steps), not a measurement
        return f"{v[0]:g}"
    se = statistics.stdev(v) / len(v) ** 0.5
    digits = 2 if abs(statistics.mean(v)) < 10 else 1
    return f"{statistics.mean(v):.{digits}f} ± {se:.{digits}f}"


COLUMNS = (("steps", "steps", 1), ("CPU s", "cpu_s", 1), ("val loss", "val_loss", 1),
           ("test loss", "test_loss", 1), ("E MAE meV/atom", "energy_mae", 1e3),
           ("F MAE meV/Å", "force_mae", 1e3), ("mirror E meV/atom", "mirror_energy", 1e3),
           ("mirror F meV/Å", "mirror_force", 1e3))


def table(results: list[dict]) -> str:
    """Markdown table: one row per (model, size, variant), mean ± SE over seeds."""
    lines = ["| model | train | variant | seeds | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|" + "---|" * (4 + len(COLUMNS))]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["model"], r["size"], r["variant"]), []).append(r)
    for (model, size, variant), rows in sorted(groups.items()):
        cells = [mean_se([r[key] for r in rows], scale) for _, key, scale in COLUMNS]
        lines.append(f"| {model} | {size} | {variant} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wins(results: list[dict], key: str) -> str:
    """How often the plain run beats the averaged run of the same model/size/seed on ``key``."""
    by = {(r["model"], r["size"], r["seed"], r["variant"]): r[key] for r in results}
    pairs = [(by[k], by[(*k[:3], "plain")]) for k in by if k[3] == "averaged"
             and (*k[:3], "plain") in by]
    return f"plain lower {key} in {sum(p < a for a, p in pairs)}/{len(pairs)} paired runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["eqv2-5.6k"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[96, 192])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=135, help="steps of the averaged runs")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_parity"))
    parser.add_argument("--reevaluate", action="store_true",
                        help="recompute the metrics of the runs in --out/results.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    StructureStore(default_data_path())  # fail early when the dataset is missing
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else []
    if args.reevaluate:
        torch.set_num_threads(1)
        results = [{**r, **evaluate(Path(r["run"]))} for r in results]
        path.write_text(json.dumps(results, indent=1))
    done = {(r["model"], r["size"], r["seed"], r["variant"]) for r in results}
    jobs = [(m, n, s, v) for m in args.models for n in args.sizes for s in range(args.seeds)
            for v in VARIANTS if (m, n, s, v) not in done]
    with ThreadPoolExecutor(args.jobs) as pool:
        for rec in pool.map(lambda job: one(job, args.steps, args.out), jobs):
            results.append(rec)
            path.write_text(json.dumps(results, indent=1))
            print(f"{rec['model']} n={rec['size']} seed={rec['seed']} {rec['variant']}: "
                  f"{rec['cpu_s']:.0f} s CPU, test loss {rec['test_loss']:.2f}", flush=True)
    print(table(results))
    for key in ("val_loss", "test_loss", "force_mae"):
        print(wins(results, key))


if __name__ == "__main__":
    main()
