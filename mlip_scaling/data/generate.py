"""Diverse non-equilibrium structures labelled by an oracle, in resumable parallel chunks.

Structure ``k`` of a recipe is built from its own generator ``default_rng([seed, k])``,
so the dataset does not depend on the number of workers or on chunking. Kinds follow
OMat24's spirit: bulk prototypes and alloys, supercells of 2..~128 atoms, vacancies,
slabs with vacuum, strains up to 8 %, rattles of 0.01-0.3 Å, snapshots of short oracle
MD at 300-3000 K and frames of oracle relaxations.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk, surface
from ase.data import atomic_numbers, covalent_radii, reference_states
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.optimize import FIRE

from mlip_scaling.data.oracles import EMT_METALS, get_oracle, oracle_elements
from mlip_scaling.data.store import StructureStore, merge_stores, write_store
from mlip_scaling.errors import ConfigError

__all__ = ["Recipe", "RECIPES", "get_recipe", "make_structure", "label_structure",
           "generate_dataset", "DEFAULT_STRUCTURES"]

DEFAULT_STRUCTURES = 10_000
_PROTOTYPES_METAL = ("fcc", "bcc", "hcp", "l12", "b2", "rocksalt", "random_alloy")
_PROTOTYPES_COVALENT = ("diamond", "fcc", "bcc", "sc", "rocksalt")
_MODES = ("bulk", "bulk", "bulk", "vacancy", "slab", "md", "relax")


@dataclass(frozen=True)
class Recipe:
    """Which oracle labels which chemistry (``groups``: (elements, covalent?, weight));
    ``max_atoms``: the largest structure (default 64 covalent, 128 metallic)."""

    name: str
    oracle: str
    groups: tuple[tuple[tuple[str, ...], bool, float], ...]
    max_atoms: int | None = None


RECIPES: dict[str, Recipe] = {
    "default": Recipe("default", "mixed:emt+sw", ((EMT_METALS, False, 0.7), (("Si",), True, 0.3))),
    "emt": Recipe("emt", "emt", ((EMT_METALS, False, 1.0),)),
    "sw": Recipe("sw", "sw", ((("Si",), True, 1.0),)),
    "tersoff": Recipe("tersoff", "tersoff", ((("Si", "C"), True, 1.0),)),
    # the reference scaling study: Stillinger-Weber Si (three-body, angular) in cells of
    # at most 16 atoms, so that equivariant models of several degrees train on 2 cores
    "sw-small": Recipe("sw-small", "sw", ((("Si",), True, 1.0),), max_atoms=16),
}


def get_recipe(name: str, oracle: str | None = None, elements: Sequence[str] = ()) -> Recipe:
    """A named recipe, or one for ``oracle`` over ``elements`` (metallic prototypes)."""
    if name in RECIPES and not elements:
        return RECIPES[name]
    if oracle is None:
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)} "
                          "(or give --oracle and --elements)")
    elements = tuple(elements) or oracle_elements(oracle)
    if not elements:
        raise ConfigError(f"oracle {oracle!r} needs --elements to know what to generate")
    bad = [e for e in elements if e not in atomic_numbers]
    if bad:
        raise ConfigError(f"unknown element(s) {', '.join(bad)}")
    covalent = all(reference_states[atomic_numbers[e]] and
                   reference_states[atomic_numbers[e]].get("symmetry") == "diamond"
                   for e in elements)
    return Recipe(f"{oracle}:{'-'.join(elements)}", oracle, ((elements, covalent, 1.0),))


def _bond_length(symbol: str) -> float:
    """Nearest-neighbour distance of the element's reference state, Å."""
    ref = reference_states[atomic_numbers[symbol]] or {}
    if ref.get("symmetry") == "fcc":
        return float(ref["a"]) / np.sqrt(2.0)
    if ref.get("symmetry") == "diamond":
        return float(ref["a"]) * np.sqrt(3.0) / 4.0
    return 2.0 * covalent_radii[atomic_numbers[symbol]]


def _prototype(kind: str, elements: Sequence[str], rng: np.random.Generator) -> Atoms:
    """A small primitive/conventional cell of prototype ``kind`` (volume ~ fcc of the mix)."""
    el = list(rng.choice(elements, size=2))
    d = float(np.mean([_bond_length(e) for e in el]))
    covalent = (reference_states[atomic_numbers[el[0]]] or {}).get("symmetry") == "diamond"
    if covalent and kind != "diamond":
        d *= 1.12  # denser packings of a covalent element have longer bonds
    if kind == "diamond":
        return bulk(el[0], "diamond", a=4.0 * d / np.sqrt(3.0))
    if kind == "sc":
        return bulk(el[0], "sc", a=d)
    if kind == "bcc":
        return bulk(el[0], "bcc", a=2.0 * d / np.sqrt(3.0))
    if kind == "hcp":
        return bulk(el[0], "hcp", a=d, c=d * 1.633)
    if kind == "l12":
        atoms = bulk(el[0], "fcc", a=d * np.sqrt(2.0), cubic=True)
        atoms.symbols[0] = el[1]
        return atoms
    if kind == "b2":
        return bulk(f"{el[0]}{el[1]}", "cesiumchloride", a=2.0 * d / np.sqrt(3.0))
    if kind == "rocksalt":
        return bulk(f"{el[0]}{el[1]}", "rocksalt", a=2.0 * d)
    return bulk(el[0], "fcc", a=d * np.sqrt(2.0))  # fcc and random_alloy


def _supercell(atoms: Atoms, rng: np.random.Generator, max_atoms: int = 128) -> Atoms:
    """Repeat to a log-uniform target size in [len(atoms), max_atoms]."""
    target = int(np.exp(rng.uniform(np.log(max(len(atoms), 2)), np.log(max_atoms))))
    reps = [1, 1, 1]
    while len(atoms) * np.prod(reps) * 2 <= target:
        reps[int(np.argmin(np.linalg.norm(atoms.cell, axis=1) * reps))] += 1
    return atoms.repeat(reps)


def _strain_and_rattle(atoms: Atoms, rng: np.random.Generator) -> None:
    """Symmetric strain up to 8 %, then a Gaussian rattle of 0.01-0.3 Å, shrunk if any
    pair would come closer than 70 % of the shortest starting distance."""
    from ase.neighborlist import neighbor_list

    eps = rng.uniform(-0.08, 0.08, size=(3, 3)) * rng.uniform(0, 1)
    eps = 0.5 * (eps + eps.T)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(0.3)))
    start = atoms.positions.copy()
    kick = rng.normal(scale=sigma, size=start.shape)
    d0 = neighbor_list("d", atoms, 4.0).min(initial=4.0)
    for _ in range(6):
        atoms.positions = start + kick
        if neighbor_list("d", atoms, 0.7 * d0).size == 0:
            break
        kick *= 0.5


def make_structure(recipe: Recipe, index: int, seed: int = 0) -> tuple[Atoms, str, int]:
    """Unlabelled structure ``index`` of ``recipe`` and its mode ('bulk', 'md', ...).

    Returns (atoms, mode, mode_seed); modes 'md'/'relax' are finished by the oracle in
    :func:`label_structure`.
    """
    rng = np.random.default_rng([seed, index])
    weights = np.array([w for _, _, w in recipe.groups])
    elements, covalent, _ = recipe.groups[rng.choice(len(weights), p=weights / weights.sum())]
    kinds = _PROTOTYPES_COVALENT if covalent else _PROTOTYPES_METAL
    max_atoms = recipe.max_atoms or (64 if covalent else 128)  # many-body oracles: slower
    atoms = _supercell(_prototype(str(rng.choice(kinds)), elements, rng), rng, max_atoms)
    if rng.choice(kinds) == "random_alloy" or (not covalent and rng.random() < 0.25):
        atoms.symbols = list(rng.choice(elements, size=len(atoms)))
    mode = str(rng.choice(_MODES))
    if mode == "vacancy" and len(atoms) > 3:
        del atoms[int(rng.integers(len(atoms)))]
    if mode == "slab":
        miller = [(1, 0, 0), (1, 1, 0), (1, 1, 1)][int(rng.integers(3))]
        layers = int(rng.integers(2, 5))
        atoms = surface(atoms, miller, layers, vacuum=float(rng.uniform(4.0, 8.0)))
        if len(atoms) > max_atoms:
            atoms = atoms[:max_atoms]
    _strain_and_rattle(atoms, rng)
    atoms.wrap()
    return atoms, mode, int(rng.integers(2**31))


def label_structure(atoms: Atoms, mode: str, mode_seed: int, oracle) -> Atoms:
    """Finish 'md'/'relax' modes with the oracle, then attach energy/forces/stress."""
    atoms.calc = oracle
    rng = np.random.default_rng(mode_seed)
    if mode == "md":
        MaxwellBoltzmannDistribution(atoms, temperature_K=float(rng.uniform(300, 3000)), rng=rng)
        VelocityVerlet(atoms, timestep=1.0 * units.fs).run(int(rng.integers(3, 8)))
    elif mode == "relax":
        FIRE(atoms, logfile=None).run(fmax=0.05, steps=int(rng.integers(3, 8)))
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    from ase.calculators.singlepoint import SinglePointCalculator

    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out.calc = SinglePointCalculator(out, **results)
    return out


def _label_chunk(job: tuple[Recipe, int, int, int, str]) -> tuple[str, int]:
    recipe, seed, start, stop, path = job
    oracle = get_oracle(recipe.oracle, trusted=True)  # named by the caller, not by a file
    structures = [label_structure(*make_structure(recipe, k, seed), oracle)
                  for k in range(start, stop)]
    write_store(path, structures, {"oracle": recipe.oracle, "recipe": recipe.name})
    return path, stop - start


def generate_dataset(
    oracle: str | None,
    n_structures: int,
    out: str | Path,
    seed: int = 0,
    workers: int | None = None,
    recipe: str = "default",
    progress: bool = True,
    chunk_size: int = 500,
    elements: Sequence[str] = (),
) -> Path:
    """Generate, label and store ``n_structures``; finished chunks survive interruption.

    Chunks go to ``OUT.parts/``; a rerun labels only missing chunks, then merges them
    atomically into ``out`` and removes the parts.
    """
    if oracle is not None and recipe in RECIPES and not elements:
        if RECIPES[recipe].oracle != oracle:
            recipe = "custom"
    spec = get_recipe(recipe, oracle, elements)
    if n_structures < 1:
        raise ConfigError(f"--structures must be >= 1, got {n_structures}")
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    jobs = [(spec, seed, s, min(s + chunk_size, n_structures),
             str(parts / f"chunk-{s // chunk_size:05d}.h5"))
            for s in range(0, n_structures, chunk_size)]
    todo = [j for j in jobs if not _chunk_done(Path(j[4]), j[3] - j[2])]
    _run_jobs(todo, workers, progress, n_structures - sum(j[3] - j[2] for j in todo),
              n_structures)
    name = "default" if spec.name == "default" else out.stem
    merge_stores([j[4] for j in jobs], out, {"oracle": spec.oracle, "recipe": spec.name,
                                            "seed": seed, "name": name})
    shutil.rmtree(parts)
    return out


def _chunk_done(path: Path, expected: int) -> bool:
    if not path.is_file():
        return False
    try:
        return len(StructureStore(path)) == expected
    except Exception:  # a broken part is simply redone
        return False


def _run_jobs(todo: list, workers: int | None, progress: bool, done: int, total: int) -> None:
    from mlip_scaling.progress import ProgressBar

    workers = max(1, min(workers or mp.cpu_count(), len(todo) or 1))
    with ProgressBar(total, done, "labelling", "structures", progress) as bar:
        if workers == 1:
            for job in todo:
                bar.advance(_label_chunk(job)[1])
        else:
            with mp.get_context("spawn").Pool(workers) as pool:
                for _, n in pool.imap_unordered(_label_chunk, todo):
                    bar.advance(n)
