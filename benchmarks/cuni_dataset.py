"""A Cu-Ni alloy dataset labelled by ASE's EMT, generated once and cached as extxyz.

Structure ``k`` comes from its own generator ``default_rng([seed, k])``: a random fcc
Cu(1-x)Ni(x) solid solution (x uniform in [0, 1]) in a cubic supercell of 32, 48, 72 or
108 atoms, with a vacancy in a quarter of them (31-108 atoms), the Vegard lattice constant
scaled by up to ±3 %, a random symmetric strain up to 2 %, and a Gaussian rattle of
0.02-0.25 Å (log-uniform). Labels: EMT energy (eV), forces (eV/Å) and stress (eV/Å^3).

The files are plain extxyz so that both this package and a MACE venv (which cannot import
this package) read the same structures.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from mlip_scaling.data.oracles import get_oracle

VERSION = "cuni-emt-1"
_REPEATS = ((2, 2, 2), (2, 2, 3), (2, 3, 3), (3, 3, 3))
_LATTICE = {"Cu": 3.61, "Ni": 3.52}


def make_structure(index: int, seed: int = 0) -> Atoms:
    """Unlabelled structure ``index`` (deterministic in ``seed`` and ``index``)."""
    rng = np.random.default_rng([seed, index])
    x_ni = rng.uniform()
    a = ((1 - x_ni) * _LATTICE["Cu"] + x_ni * _LATTICE["Ni"]) * rng.uniform(0.97, 1.03)
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(_REPEATS[rng.integers(len(_REPEATS))])
    atoms.symbols = np.where(rng.uniform(size=len(atoms)) < x_ni, "Ni", "Cu")
    if rng.uniform() < 0.25:
        del atoms[int(rng.integers(len(atoms)))]
    eps = rng.uniform(-0.02, 0.02, size=(3, 3))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
    sigma = np.exp(rng.uniform(np.log(0.02), np.log(0.25)))
    atoms.positions += rng.normal(scale=sigma, size=atoms.positions.shape)
    atoms.wrap()
    return atoms


def label(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` carrying EMT energy, forces and stress."""
    atoms = atoms.copy()
    atoms.calc = get_oracle("emt")
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
               "stress": atoms.get_stress()}
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    out.calc = SinglePointCalculator(out, **results)
    return out


def cache_dir() -> Path:
    """Where datasets are cached: ``$MLIP_BENCH_CACHE`` or ``~/.cache/mlip-scaling/bench``."""
    default = Path.home() / ".cache" / "mlip-scaling" / "bench"
    return Path(os.environ.get("MLIP_BENCH_CACHE", default))


def dataset_paths(n_train: int, n_test: int, seed: int = 0,
                  root: Path | None = None) -> tuple[Path, Path]:
    """(train.xyz, test.xyz) of the dataset, generated and labelled on first use.

    Train structures are indices ``0..n_train-1``, test ``n_train..n_train+n_test-1``;
    each file is written to a temporary name and renamed, so a killed run leaves no
    half-written dataset.
    """
    folder = (root or cache_dir()) / f"{VERSION}-seed{seed}-{n_train}-{n_test}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "train.xyz", folder / "test.xyz"
    for path, indices in zip(paths, (range(n_train), range(n_train, n_train + n_test))):
        if not path.exists():
            tmp = path.with_suffix(f".tmp{os.getpid()}.xyz")
            write(tmp, [label(make_structure(k, seed)) for k in indices], format="extxyz")
            tmp.replace(path)
    return paths


def load(path: Path) -> list[Atoms]:
    """All structures of one extxyz file."""
    return read(path, index=":", format="extxyz")
