"""Train a from-scratch MACE on extxyz files for a wall-clock budget (``bench_train.py`` peer).

Runs in a mace-torch venv (which cannot import mlip_scaling), so the loop here mirrors
bench_train's loop for the package's models: the same loss (``w_E`` MAE of energy/atom +
``w_F`` mean |ΔF| + ``w_S`` stress iso/deviatoric MAE), AdamW, a cosine learning rate over
the *time* budget, the same EMA ramp, and test evaluation (EMA weights) at the requested
training times, which do not count towards the budget. Prints one ``RESULT {json}`` line.

Model: MACE with 2 interactions, 32x0e+32x1o, max_ell 3, correlation 3, r_max 5 Å,
8 Bessel functions (bench_models.py's MACE, with the Cu and Ni species), ScaleShiftMACE
with the RMS force as scale and least-squares per-element reference energies.
"""

import argparse
import json
import math
import statistics
import time

import numpy as np
import torch
from ase.build import bulk
from ase.io import read

torch.serialization.add_safe_globals([slice])  # e3nn 0.4's shipped constants, torch >= 2.6
from e3nn import o3  # noqa: E402
from mace import data, modules, tools  # noqa: E402
from mace.tools import torch_geometric  # noqa: E402

KEYS = data.KeySpecification(info_keys={"energy": "REF_energy", "stress": "REF_stress"},
                             arrays_keys={"forces": "REF_forces"})


def load(path, z_table, cutoff):
    """extxyz -> list of mace AtomicData with energy, forces, stress labels."""
    items = []
    for atoms in read(path, index=":", format="extxyz"):
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.info["REF_stress"] = atoms.get_stress()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        config = data.config_from_atoms(atoms, key_specification=KEYS)
        items.append(data.AtomicData.from_config(config, z_table=z_table, cutoff=cutoff))
    return items


def build(train, z_table, seed):
    """ScaleShiftMACE with least-squares E0s and the RMS force as scale."""
    zs = z_table.zs
    counts = np.array([[int((t.node_attrs[:, k] > 0.5).sum()) for k in range(len(zs))]
                       for t in train], dtype=float)
    energies = np.array([float(t.energy) for t in train])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    rms = float(torch.cat([t.forces for t in train]).pow(2).mean().sqrt())
    loader = torch_geometric.dataloader.DataLoader(train, batch_size=32)
    avg = float(modules.compute_avg_num_neighbors(loader))
    torch.manual_seed(seed)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.ScaleShiftMACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, interaction_cls=block,
        interaction_cls_first=block, num_interactions=2, num_elements=len(zs),
        hidden_irreps=o3.Irreps("32x0e+32x1o"), MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=e0, avg_num_neighbors=avg, atomic_numbers=zs, correlation=3,
        gate=torch.nn.functional.silu, atomic_inter_scale=rms, atomic_inter_shift=0.0)


def stress_parts(s):
    iso = torch.diagonal(s, dim1=1, dim2=2).mean(1)
    return iso, s - iso[:, None, None] * torch.eye(3, dtype=s.dtype)


def loss_fn(out, batch, w):
    n = (batch["ptr"][1:] - batch["ptr"][:-1]).to(out["energy"].dtype)
    e = ((out["energy"] - batch["energy"]).abs() / n).mean()
    f = torch.linalg.vector_norm(out["forces"] - batch["forces"], dim=-1).mean()
    (ip, dp), (ir, dr) = stress_parts(out["stress"]), stress_parts(batch["stress"])
    s = (ip - ir).abs().mean() + (dp - dr).abs().mean()
    return w[0] * e + w[1] * f + w[2] * s


def evaluate(model, items):
    """(energy MAE meV/atom, force MAE meV/Å per component) on ``items``."""
    loader = torch_geometric.dataloader.DataLoader(items, batch_size=16)
    e_abs = f_abs = n_f = 0.0
    for batch in loader:
        b = batch.to_dict()
        out = model(b, compute_force=True, training=False)
        n = b["ptr"][1:] - b["ptr"][:-1]
        e_abs += float(((out["energy"] - b["energy"]).abs() / n).sum())
        f_abs += float((out["forces"] - b["forces"]).abs().sum())
        n_f += b["forces"].numel()
    return 1e3 * e_abs / len(items), 1e3 * f_abs / n_f


def infer_ms(model, z_table):
    atoms = bulk("Cu", "fcc", a=3.57, cubic=True) * (4, 4, 4)
    atoms.symbols[::2] = "Ni"
    atoms.rattle(0.05, seed=0)
    item = data.AtomicData.from_config(data.config_from_atoms(atoms), z_table=z_table,
                                       cutoff=5.0)
    b = next(iter(torch_geometric.dataloader.DataLoader([item], batch_size=1))).to_dict()
    times = []
    for _ in range(6):
        start = time.process_time()
        model(dict(b), compute_force=True, compute_stress=True, training=False)
        times.append(time.process_time() - start)
    return 1e3 * statistics.median(times[1:])


def main():
    p = argparse.ArgumentParser()
    for name, kind in (("train", str), ("test", str), ("budget", float), ("checkpoints", str),
                       ("threads", int), ("seed", int), ("lr", float), ("batch_size", int),
                       ("weights", str)):
        p.add_argument("--" + name.replace("_", "-"), type=kind, required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float32)  # MACE's own convention, own process
    z_table = tools.AtomicNumberTable([28, 29])
    train, test = load(args.train, z_table, 5.0), load(args.test, z_table, 5.0)
    model = build(train, z_table, args.seed)
    weights = [float(x) for x in args.weights.split(",")]
    checkpoints = sorted(float(x) for x in args.checkpoints.split(","))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(args.seed)
    curve, steps, clock = [], 0, 0.0
    while checkpoints:
        order = torch.randperm(len(train), generator=gen).tolist()
        for k in range(0, len(order) - args.batch_size + 1, args.batch_size):
            start = time.process_time()
            frac = min(clock / args.budget, 1.0)
            warm = min(1.0, (steps + 1) / 20)
            for g in opt.param_groups:
                g["lr"] = args.lr * warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
            batch = next(iter(torch_geometric.dataloader.DataLoader(
                [train[i] for i in order[k:k + args.batch_size]], batch_size=args.batch_size)))
            b = batch.to_dict()
            out = model(b, compute_force=True, compute_stress=True, training=True)
            loss = loss_fn(out, b, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            steps += 1
            d = min(0.999, (1 + steps) / (10 + steps))
            with torch.no_grad():
                for name, v in model.state_dict().items():
                    if v.is_floating_point():
                        ema[name].mul_(d).add_(v.detach(), alpha=1 - d)
            clock += time.process_time() - start
            if checkpoints and clock >= checkpoints[0]:
                live = {k: v.clone() for k, v in model.state_dict().items()}
                model.load_state_dict(ema)
                e_mae, f_mae = evaluate(model, test)
                curve.append({"t": clock, "steps": steps, "energy_mae": e_mae,
                              "force_mae": f_mae})
                print(f"  MACE t={clock:7.1f}s steps={steps:6d} E {e_mae:7.2f} meV/atom "
                      f"F {f_mae:7.2f} meV/A", flush=True)
                model.load_state_dict(live)
                while checkpoints and clock >= checkpoints[0]:
                    checkpoints.pop(0)
                if not checkpoints:
                    break
    model.load_state_dict(ema)
    params = sum(p.numel() for p in model.parameters())
    print("RESULT " + json.dumps({"params": params, "curve": curve,
                                  "infer_ms": infer_ms(model, z_table)}))


if __name__ == "__main__":
    main()
