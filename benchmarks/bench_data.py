"""Data-pipeline speed: HDF5 random reads, and neighbour list + collate vs a training step.

    python benchmarks/bench_data.py [--data FILE.h5]   # default: the embedded dataset

Prints structures/s of random reads from the store (target >= 20,000/s), the neighbour
list (vesin, ASE, matscipy side by side on a 256-atom cell) and the time to build and
collate a batch of 64 32-atom cells at 6 Å (and collate alone) next to one training step
of the smallest transformer preset on that batch (target: data work < 10 % of the step).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from ase.build import bulk

from mlip_scaling.data.atomic_data import collate, from_atoms
from mlip_scaling.data.embedded import default_data_path
from mlip_scaling.data.neighbors import NeighborListTransform, neighbor_list
from mlip_scaling.data.store import StructureStore
from mlip_scaling.models import registry
from mlip_scaling.models.potential import Potential


def _median_ms(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def bench_reads(path) -> float:
    store = StructureStore(path)
    store[0]  # arrays are loaded on first access
    idx = np.random.default_rng(0).integers(len(store), size=20_000)
    t = time.perf_counter()
    for i in idx:
        store[int(i)]
    return len(idx) / (time.perf_counter() - t)


def bench_neighbours() -> dict[str, float]:
    from ase.neighborlist import neighbor_list as ase_nl
    from matscipy.neighbours import neighbour_list as ms_nl

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)
    atoms.rattle(0.05, seed=0)
    return {
        "vesin": _median_ms(lambda: neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc,
                                                  5.0)),
        "matscipy": _median_ms(lambda: ms_nl("ijS", atoms, 5.0)),
        "ase": _median_ms(lambda: ase_nl("ijS", atoms, 5.0), repeats=3),
    }


def bench_batch(preset: str) -> tuple[float, float, float]:
    cells = []
    for k in range(64):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        atoms.rattle(0.1, seed=k)
        atoms.info["energy"] = 0.0
        atoms.arrays["forces"] = np.zeros((32, 3))
        cells.append(atoms)
    nl = NeighborListTransform(6.0)
    data = [from_atoms(a, dtype=torch.float32) for a in cells]
    prep = _median_ms(lambda: collate([nl(d) for d in data]))
    with_nl = [nl(d) for d in data]
    collate_only = _median_ms(lambda: collate(with_nl))
    family, config = registry.get_preset(preset)
    config["cutoff"] = 6.0
    pot = Potential(registry.build_model(family, config), family, config, species=[29])
    opt = torch.optim.AdamW(pot.parameters(), lr=1e-3)
    batch = collate([nl(d) for d in data])

    def step() -> None:
        out = pot(batch, create_graph=True)
        loss = out["energy"].abs().mean() + out["forces"].abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return prep, collate_only, _median_ms(step, repeats=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(default_data_path()))
    parser.add_argument("--preset", default="transformer-1.2k")
    args = parser.parse_args()
    print(f"HDF5 random reads: {bench_reads(args.data):,.0f} structures/s")
    nls = bench_neighbours()
    print("neighbour list, 256 atoms, 5 Å: " + ", ".join(f"{k} {v:.2f} ms" for k, v in nls.items()))
    prep, coll, step = bench_batch(args.preset)
    print(f"64 x 32-atom cells at 6 Å: neighbour list + collate {prep:.1f} ms (collate alone "
          f"{coll:.1f} ms; mlip-train builds neighbour lists once), training step of "
          f"{args.preset} {step:.1f} ms -> data share {100 * prep / (prep + step):.1f} % "
          f"({100 * coll / (coll + step):.1f} % per step in mlip-train)")


if __name__ == "__main__":
    main()
