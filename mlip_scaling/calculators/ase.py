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
from ase.stress import full_3x3_to_voigt_6_stress

from mlip_scaling import keys
from mlip_scaling.calculators.committee import (
    STD_KEYS,
    Committee,
    model_sources,
    provenance,
    spread,
    stds,
)
from mlip_scaling.calculators.inference import (
    StructureChecker,
    compiled,
    prepare_potential,
    sorted_neighbors,
    structure_name,
    to_numpy,
)
from mlip_scaling.calculators.neighbor_cache import NeighborCache, ResultCache
from mlip_scaling.calculators.structures import as_atoms
from mlip_scaling.data.atomic_data import AtomicData, IdentityCache, collate, from_arrays
from mlip_scaling.devices import resolve_device, resolve_dtype
from mlip_scaling.errors import ConfigError
from mlip_scaling.models.potential import Potential
from mlip_scaling.procs import keep_freed_memory

__all__ = ["ScalingCalculator"]


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
        self._identity = IdentityCache(self.device)
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
            "forces": to_numpy(out[keys.FORCES]),
            "energies": to_numpy(out[keys.ATOMIC_ENERGIES]),
        }
        if keys.STRESS in out:
            self.results["stress"] = full_3x3_to_voigt_6_stress(to_numpy(out[keys.STRESS][0]))
        self.results.update(spread(stds(out), 0, slice(None), "stress" in self.results))
        self._results.put(atoms, self.results)

    def _data(self, atoms: Atoms, index: int | None = None) -> AtomicData:
        """``atoms`` checked, with its neighbour list, as the model's input. A lone
        structure (``index`` None: an MD or relaxation step) reuses the lists and tensors
        kept from earlier calls; ``index`` names a structure of a batch in errors."""
        numbers, positions, cell, pbc = atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc
        where = partial(structure_name, numbers, index)  # the name is built only for an error
        self.check(numbers, positions, cell, pbc, where)
        if index is None:
            edges = self._neighbors(positions, cell, pbc, numbers, where)
            identity = self._identity(numbers, pbc)
        else:
            edges, identity = sorted_neighbors(positions, cell, pbc, self.cutoff, where), None
        return from_arrays(numbers, positions, cell, pbc, dtype=self.dtype, device=self.device,
                           edges=edges, identity=identity)

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
        batch = collate([self._data(atoms, start + k) for k, atoms in enumerate(chunk)])
        periodic = batch[keys.PBC].all(dim=1).cpu().numpy()
        out = self._runner(batch, compute_forces=True, compute_stress=bool(periodic.any()))
        energy = to_numpy(out[keys.ENERGY])
        forces, energies = to_numpy(out[keys.FORCES]), to_numpy(out[keys.ATOMIC_ENERGIES])
        stress = to_numpy(out[keys.STRESS]) if keys.STRESS in out else None
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
                res["stress"] = full_3x3_to_voigt_6_stress(stress[k])
            res.update(spread(std, k, atoms_slice, "stress" in res))
            results.append(res)
        return results


def _same(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """Equal shapes and values within ``tol`` (exact comparison first: the common case)."""
    if a.shape != b.shape:
        return False
    if np.array_equal(a, b):
        return True
    if a.dtype == bool or b.dtype == bool:
        return False
    return bool(np.abs(a - b).max(initial=0.0) <= tol)
