"""ScalingCalculator: an ASE calculator around a :class:`Potential`, with batched inference.

Usage::

    from mlip_scaling import ScalingCalculator
    atoms.calc = ScalingCalculator("model.pt", dtype="float64")
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()

Units: energy eV, forces eV/Å, stress eV/Å^3 in ASE's Voigt order
[xx, yy, zz, yz, xz, xy] and sign (``(1/V) dE/dstrain``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import chemical_symbols

from mlip_scaling import keys
from mlip_scaling.calculators.committee import (
    STD_KEYS,
    VOIGT,
    Committee,
    compiled,
    model_sources,
    prepare_potential,
    provenance,
    spread,
    stds,
)
from mlip_scaling.calculators.neighbor_cache import NeighborCache, ResultCache
from mlip_scaling.calculators.structures import as_atoms
from mlip_scaling.data.neighbors import Where, check_geometry, neighbor_list
from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.models.potential import MAX_Z, Potential
from mlip_scaling.procs import keep_freed_memory

__all__ = ["ScalingCalculator", "resolve_device", "resolve_dtype", "prepare_potential",
           "sorted_neighbors", "StructureChecker", "structure_name"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` (or the torch dtypes) -> torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return _DTYPES[dtype]


def sorted_neighbors(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float,
    where: Where = "structure",
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour pairs (``edge_index`` [2,E], integer ``shifts`` [E,3]) within ``cutoff`` Å,
    in a canonical order (centre, neighbour, image) so that any two lists holding the same
    pairs hold them in the same order. ``where`` names the structure in errors.
    """
    edge_index, shifts = neighbor_list(positions, cell, pbc, cutoff, where)
    span = int(np.abs(shifts).max(initial=0)) * 2 + 1
    code = ((shifts[:, 0] * span + shifts[:, 1]) * span + shifts[:, 2]) + (span**3) // 2
    key = (edge_index[0] * len(positions) + edge_index[1]) * span**3 + code
    order = np.argsort(key, kind="stable")
    return np.ascontiguousarray(edge_index[:, order]), np.ascontiguousarray(shifts[order])


def structure_name(numbers: np.ndarray, index: int | None = None, kind: str = "structure"
                   ) -> str:
    """``"structure Cu2O"`` or ``"structure 3 (Cu2O)"``: how errors name a structure."""
    from ase.formula import Formula

    formula = Formula.from_list([chemical_symbols[z] if 0 <= z < len(chemical_symbols)
                                 else "X" for z in numbers.tolist()]).format("hill")
    return f"{kind} {formula}" if index is None else f"{kind} {index} ({formula})"


class StructureChecker:
    """Validates structures against a potential: known elements, then the geometry checks
    of the neighbour list (finite, cell heights, span, density) at ``cutoff`` Å."""

    def __init__(self, species: Sequence[int], cutoff: float) -> None:
        self.species = list(species)
        self.cutoff = float(cutoff)
        self._known = np.zeros(MAX_Z + 1, dtype=bool)
        self._known[self.species] = True

    def __call__(self, numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray,
                 pbc: np.ndarray, where: Where) -> None:
        """Raise :class:`DataError` naming ``where`` and the problem; return if fine."""
        self.elements(numbers, where)
        check_geometry(positions, cell, pbc, self.cutoff, where)

    def elements(self, numbers: np.ndarray, where: Where) -> None:
        """Raise :class:`DataError` naming ``where`` if an element is unknown to the model."""
        bad = (numbers < 0) | (numbers > MAX_Z)
        bad[~bad] = ~self._known[numbers[~bad]]
        if bad.any():
            z = int(numbers[bad][0])
            name = chemical_symbols[z] if 0 <= z < len(chemical_symbols) else "?"
            trained = ", ".join(chemical_symbols[s] for s in self.species)
            raise DataError(
                f"{where() if callable(where) else where}: element {name} (Z={z}) is not "
                f"known to this model (trained on {trained})"
            )


class ScalingCalculator(Calculator):
    """ASE calculator for mlip-scaling models (energy, forces, stress, per-atom energies).

    Args:
        model: path of a model file (``.pt``, loaded safely) or a loaded ``Potential``;
            a list of them or a folder of model files makes a committee (see
            :mod:`~mlip_scaling.calculators.committee`): ``results`` then hold the member
            mean and ``energy_std``, ``forces_std``, ``stress_std``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        dtype: ``"float32"`` or ``"float64"``; only this calculator's model and inputs
            use it (torch's global default dtype is never changed).
        compile: run the energy model through ``torch.compile``.
        skin: neighbour-list skin (Å) for reuse between steps; 0 rebuilds on every move.

    Stress is computed when asked for and, once asked for, on every later call (cell
    relaxations and NPT then need one model evaluation per step). Structures that are not
    periodic in all three directions have no stress (``PropertyNotImplementedError``).
    ``parameters`` (and ``todict()``, which ASE databases and trajectories store) name the
    model file(s) and their sha256 digests. Neighbour lists and results of the last few
    structures are kept, so one calculator can serve several structures (NEB images).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self,
        model: str | os.PathLike | Potential | Sequence[str | os.PathLike | Potential],
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float32",
        compile: bool = False,
        skin: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        keep_freed_memory()  # MD allocates the same large tensors every step
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        sources, committee = model_sources(model)
        self.members = [prepare_potential(m, self.device, self.dtype) for m in sources]
        self.potential = self.members[0]
        runners = [compiled(m) if compile else m for m in self.members]
        self._runner = (Committee(runners, [m.cutoff for m in self.members]) if committee
                        else runners[0])
        self.cutoff = max(m.cutoff for m in self.members)
        if skin < 0:
            raise ConfigError(f"skin must be >= 0 Å, got {skin}")
        self.skin = float(skin)
        species = sorted(set.intersection(*(set(m.species) for m in self.members)))
        self.check = StructureChecker(species, self.cutoff + self.skin)
        self.parameters.update(provenance(sources, committee), dtype=str(self.dtype)[6:],
                               skin=self.skin)
        if committee:
            self.implemented_properties = [*self.implemented_properties, *STD_KEYS.values()]
        self._neighbors = NeighborCache(self.cutoff, self.skin, sorted_neighbors)
        self._results = ResultCache()
        self._cached: dict[str, object] = {}
        self._stress_wanted = False

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """Changes since the last calculation (as ASE's, with an exact-equality fast path)."""
        old = self.atoms
        if old is None or len(old) != len(atoms):
            return list(all_changes)
        changes = [name for name, a, b in (("cell", old.cell.array, atoms.cell.array),
                                           ("pbc", old.pbc, atoms.pbc))
                   if not _same(a, b, tol)]
        for name in all_changes:
            if name in ("cell", "pbc"):
                continue
            a, b = old.arrays.get(name), atoms.arrays.get(name)
            if (a is None) != (b is None) or (a is not None and not _same(a, b, tol)):
                changes.append(name)
        return [name for name in changes if name not in self.ignored_changes]

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Evaluate the model on ``atoms`` and fill ``self.results``."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(atoms.pbc.all())
        if "stress" in properties:
            if not periodic:
                raise PropertyNotImplementedError(
                    "stress needs a structure periodic in all three directions"
                )
            self._stress_wanted = True
        cached = self._results.get(atoms, ("stress",) if "stress" in properties else ())
        if cached is not None:
            self.results = cached
            return
        data = self._data(atoms)
        out = self._runner(data, compute_forces=True,
                           compute_stress=periodic and self._stress_wanted)
        energy = float(out[keys.ENERGY].detach()[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": _numpy(out[keys.FORCES]),
            "energies": _numpy(out[keys.ATOMIC_ENERGIES]),
        }
        if keys.STRESS in out:
            self.results["stress"] = _numpy(out[keys.STRESS][0])[VOIGT]
        self.results.update(spread(stds(out), 0, slice(None), "stress" in self.results))
        self._results.put(atoms, self.results)

    def _data(self, atoms: Atoms) -> dict[str, torch.Tensor]:
        positions = atoms.positions
        cell, pbc, numbers = atoms.cell.array, atoms.pbc, atoms.numbers
        where = partial(structure_name, numbers)  # the name is built only for an error
        self.check(numbers, positions, cell, pbc, where)
        edge_index, shifts = self._neighbors(positions, cell, pbc, numbers, where)
        return {
            keys.POSITIONS: self._tensor(positions),
            keys.CELL: self._tensor(cell).reshape(1, 3, 3),
            keys.EDGE_INDEX: torch.from_numpy(edge_index).to(self.device),
            keys.EDGE_CELL_SHIFT: self._tensor(shifts),
            **self._static(numbers, pbc),
        }

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device=self.device, dtype=self.dtype)

    def _static(self, numbers: np.ndarray, pbc: np.ndarray) -> dict[str, torch.Tensor]:
        """Tensors that only change with the atoms' identity (reused between calls)."""
        ref = self._cached.get("key")
        if ref is None or not (np.array_equal(ref[0], numbers) and np.array_equal(ref[1], pbc)):
            n = len(numbers)
            self._cached = {
                "key": (numbers.copy(), pbc.copy()),
                keys.ATOMIC_NUMBERS: torch.from_numpy(numbers.astype(np.int64)).to(self.device),
                keys.PBC: torch.from_numpy(pbc.copy()).reshape(1, 3).to(self.device),
                keys.NUM_ATOMS: torch.tensor([n], device=self.device),
                keys.BATCH: torch.zeros(n, dtype=torch.long, device=self.device),
            }
        return {k: v for k, v in self._cached.items() if k != "key"}

    def predict(
        self, structures: Sequence[Atoms | Any], batch_size: int = 32
    ) -> list[dict[str, np.ndarray]]:
        """Evaluate many structures (ASE Atoms, pymatgen Structures or Molecules) in
        batches of ``batch_size``.

        Returns one dict per structure: ``energy`` (eV, 0-d), ``forces`` [N,3] (eV/Å),
        ``energies`` [N] (eV) and, for fully periodic structures, ``stress`` [6]
        (eV/Å^3, Voigt); a committee adds ``energy_std``, ``forces_std`` and ``stress_std``.
        Results equal one-at-a-time evaluation.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        structures = [as_atoms(s, k) for k, s in enumerate(structures)]
        results: list[dict[str, np.ndarray]] = []
        for start in range(0, len(structures), batch_size):
            chunk = structures[start : start + batch_size]
            results.extend(self._predict_batch(chunk, start))
        return results

    def _predict_batch(self, chunk: Sequence[Atoms], start: int) -> list[dict[str, np.ndarray]]:
        items = [self._single(atoms, start + k) for k, atoms in enumerate(chunk)]
        batch = _collate(items)
        periodic = batch[keys.PBC].all(dim=1).cpu().numpy()
        out = self._runner(batch, compute_forces=True, compute_stress=bool(periodic.any()))
        energy = _numpy(out[keys.ENERGY])
        forces, energies = _numpy(out[keys.FORCES]), _numpy(out[keys.ATOMIC_ENERGIES])
        stress = _numpy(out[keys.STRESS]) if keys.STRESS in out else None
        std = stds(out)
        bounds = np.cumsum([0] + [len(a) for a in chunk])
        results = []
        for k in range(len(chunk)):
            atoms_slice = slice(bounds[k], bounds[k + 1])
            res = {
                "energy": np.asarray(energy[k]),
                "forces": forces[atoms_slice],
                "energies": energies[atoms_slice],
            }
            if periodic[k] and stress is not None:
                res["stress"] = stress[k][VOIGT]
            res.update(spread(std, k, atoms_slice, "stress" in res))
            results.append(res)
        return results

    def _single(self, atoms: Atoms, index: int) -> dict[str, torch.Tensor]:
        positions, cell, pbc = atoms.positions, atoms.cell.array, atoms.pbc
        numbers = atoms.numbers
        where = partial(structure_name, numbers, index)
        self.check(numbers, positions, cell, pbc, where)
        edge_index, shifts = sorted_neighbors(positions, cell, pbc, self.cutoff, where)
        return {
            keys.POSITIONS: self._tensor(positions),
            keys.CELL: self._tensor(cell).reshape(1, 3, 3),
            keys.PBC: torch.from_numpy(pbc.copy()).reshape(1, 3).to(self.device),
            keys.ATOMIC_NUMBERS: torch.from_numpy(numbers.astype(np.int64)).to(self.device),
            keys.EDGE_INDEX: torch.from_numpy(edge_index).to(self.device),
            keys.EDGE_CELL_SHIFT: self._tensor(shifts),
        }


def _collate(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate single-structure dicts into a batch (edge indices offset)."""
    device = items[0][keys.POSITIONS].device
    counts = torch.tensor([len(d[keys.ATOMIC_NUMBERS]) for d in items], device=device)
    offsets = torch.cumsum(counts, 0) - counts
    batch = {
        name: torch.cat([d[name] for d in items])
        for name in (keys.POSITIONS, keys.CELL, keys.PBC, keys.ATOMIC_NUMBERS,
                     keys.EDGE_CELL_SHIFT)
    }
    batch[keys.EDGE_INDEX] = torch.cat(
        [d[keys.EDGE_INDEX] + off for d, off in zip(items, offsets)], dim=1
    )
    batch[keys.NUM_ATOMS] = counts
    batch[keys.BATCH] = torch.repeat_interleave(torch.arange(len(items), device=device), counts)
    return batch


def _same(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """Equal shapes and values within ``tol`` (exact comparison first: the common case)."""
    if a.shape != b.shape:
        return False
    if np.array_equal(a, b):
        return True
    if a.dtype == bool or b.dtype == bool:
        return False
    return bool(np.abs(a - b).max(initial=0.0) <= tol)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()
