"""Compare a model with the oracle that labelled its dataset, on a few structures.

The structures are taken from the dataset and (by default) rattled, so that they are new
configurations; the dataset's oracle (its metadata ``oracle``) labels them afresh.

    python examples/compare_oracle.py model.pt                  # embedded default dataset
    python examples/compare_oracle.py model.pt --dataset data/cu.h5 -n 20 --rattle 0.1
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.data.embedded import default_data_path
from mlip_scaling.errors import ConfigError, DataError, cli_entry

DEFAULT_DATASET = default_data_path()


def load(dataset: str, oracle_name: str | None, n: int, seed: int):
    """``n`` structures sampled from ``dataset`` and the name of the oracle to label them."""
    from mlip_scaling.data.readers import open_dataset

    if not Path(dataset).exists():
        raise DataError(f"{dataset}: no such dataset file")
    store = open_dataset(dataset)
    metadata = getattr(store, "metadata", {}) or {}
    name = oracle_name or metadata.get("oracle")
    if not name:
        raise ConfigError(f"{dataset}: the dataset names no oracle; pass --oracle")
    if len(store) == 0:
        raise DataError(f"{dataset}: the dataset is empty")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(store), size=min(n, len(store)), replace=False)
    structures = []
    for i in sorted(int(k) for k in picks):
        atoms = store.get_atoms(i) if hasattr(store, "get_atoms") else store[i]
        structures.append(atoms.copy())
    return structures, name


def label(structures, oracle_name: str, rattle: float, seed: int, trusted: bool = False
          ) -> list[dict]:
    """Rattle each structure by ``rattle`` Å (Gaussian) and label it with the oracle.

    ``trusted``: the user typed the oracle name (a dataset's name never imports code).
    """
    from mlip_scaling.data.oracles import get_oracle

    rng = np.random.default_rng(seed)
    labels = []
    for atoms in structures:
        atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
        atoms.calc = get_oracle(oracle_name, trusted)
        ref = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            ref["stress"] = atoms.get_stress()
        labels.append(ref)
        atoms.calc = None
    return labels


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help="model file (.pt)")
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET), help="dataset file")
    parser.add_argument("--oracle", help="oracle name (default: the dataset's metadata)")
    parser.add_argument("-n", type=int, default=8, help="number of structures")
    parser.add_argument("--rattle", type=float, default=0.05, help="Gaussian rattle, Å")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    calc = ScalingCalculator(args.model, device=args.device, dtype=args.dtype)
    structures, oracle_name = load(args.dataset, args.oracle, args.n, args.seed)
    labels = label(structures, oracle_name, args.rattle, args.seed, args.oracle is not None)
    predictions = calc.predict(structures, batch_size=8)
    print(f"model {args.model} vs oracle {oracle_name!r} on {len(structures)} structures")
    print(f"{'formula':>14} {'atoms':>5} {'dE/atom meV':>12} {'F MAE meV/Å':>12} "
          f"{'σ MAE meV/Å³':>13}")
    rows = []
    for atoms, ref, pred in zip(structures, labels, predictions):
        n = len(atoms)
        de = 1000 * (float(pred["energy"]) - ref["energy"]) / n
        df = 1000 * np.abs(pred["forces"] - ref["forces"]).mean()
        ds = 1000 * np.abs(pred["stress"] - ref["stress"]).mean() if "stress" in ref else np.nan
        rows.append((abs(de), df, ds))
        print(f"{atoms.get_chemical_formula():>14} {n:5d} {de:12.2f} {df:12.1f} {ds:13.3f}")
    mae = np.nanmean(np.array(rows), axis=0)
    print(f"{'mean':>14} {'':5} {mae[0]:12.2f} {mae[1]:12.1f} {mae[2]:13.3f}  (absolute errors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
