"""Committees of models (mean and spread of their predictions) and model provenance.

A committee is several model files of the same chemistry (e.g. replicates trained with
other seeds or data subsets). All members are evaluated on one batch built from one
neighbour list (at the largest member cutoff; members with a smaller cutoff see only their
own pairs). The spread is the population standard deviation over members (``ddof=0``):
large values flag structures unlike the training data.

Usage::

    calc = ScalingCalculator(["a.pt", "b.pt", "c.pt"])   # or ScalingCalculator("replicates/")
    atoms.calc = calc
    atoms.get_potential_energy(); calc.results["energy_std"]   # eV
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from ase.stress import full_3x3_to_voigt_6_stress

from mlip_scaling import keys
from mlip_scaling.calculators.inference import ModelSpec, to_numpy
from mlip_scaling.data.atomic_data import compute_edge_vectors
from mlip_scaling.errors import ConfigError
from mlip_scaling.io_utils import file_hash
from mlip_scaling.models.potential import Potential

__all__ = ["Committee", "STD_KEYS", "model_sources", "provenance", "stds", "spread"]

#: prediction key -> name of its committee standard deviation
STD_KEYS = {keys.ENERGY: "energy_std", keys.FORCES: "forces_std", keys.STRESS: "stress_std"}


def model_sources(model: ModelSpec | Sequence[ModelSpec]) -> tuple[list[ModelSpec], bool]:
    """The members named by ``model`` and whether they form a committee.

    A file or a :class:`Potential` is one model; a list of them, or a folder (its ``*.pt``
    model files at any depth, in path order; resumable run states are skipped), is a
    committee of at least two members.
    """
    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        from mlip_scaling.checkpoint import is_run_state

        members: list[ModelSpec] = [p for p in sorted(Path(model).rglob("*.pt"))
                                    if not is_run_state(p)]
        where = f"{model}: a folder of model files"
    elif isinstance(model, (str, os.PathLike, Potential)):
        return [model], False
    elif isinstance(model, Sequence):
        members, where = list(model), "a committee"
    else:
        raise ConfigError(f"model must be a model file, a folder or a list of them, got "
                          f"{type(model).__name__}")
    if len(members) < 2:
        raise ConfigError(f"{where} needs >= 2 model files, found {len(members)}")
    return members, True


def provenance(sources: Sequence[ModelSpec], committee: bool) -> dict[str, object]:
    """``{"model": path(s), "model_sha256": hex digest(s)}`` of the model files (absolute
    paths; an in-memory potential is named by its family, with digest ``None``)."""
    names: list[str] = []
    digests: list[str | None] = []
    for source in sources:
        if isinstance(source, Potential):
            names.append(f"in-memory {source.family} potential")
            digests.append(None)
        else:
            names.append(str(Path(source).resolve()))
            digests.append(file_hash(source))
    if committee:
        return {"model": names, "model_sha256": digests}
    return {"model": names[0], "model_sha256": digests[0]}


def stds(out: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The committee standard deviations in a prediction, as float64 numpy arrays."""
    return {name: to_numpy(out[name]) for name in STD_KEYS.values() if name in out}


def spread(std: dict[str, np.ndarray], index: int, atoms: slice, stress: bool
           ) -> dict[str, float | np.ndarray]:
    """Results of structure ``index`` (atoms ``atoms``) from :func:`stds`: ``energy_std``
    (eV), ``forces_std`` [N,3] (eV/Å) and, when ``stress``, ``stress_std`` [6] (Voigt)."""
    res = {}
    if "energy_std" in std:
        res["energy_std"] = float(std["energy_std"][index])
    if "forces_std" in std:
        res["forces_std"] = std["forces_std"][atoms]
    if stress and "stress_std" in std:
        res["stress_std"] = full_3x3_to_voigt_6_stress(std["stress_std"][index])
    return res


class Committee:
    """Evaluate every member on one batch; mean predictions plus their spread.

    Args:
        members: potentials (or compiled runners) called as ``member(data, ...)``.
        cutoffs: each member's cutoff (Å); the batch's neighbour list is built at the
            largest, and a member with a smaller one gets its own pairs only.
    """

    def __init__(self, members: Sequence[Callable], cutoffs: Sequence[float]) -> None:
        self.members, self.cutoffs = list(members), [float(c) for c in cutoffs]
        self.cutoff = max(self.cutoffs)

    def __call__(self, data: dict[str, torch.Tensor], compute_forces: bool = True,
                 compute_stress: bool = True) -> dict[str, torch.Tensor]:
        """Means under the usual keys (``energy`` [B], ``energies`` [N], ``forces`` [N,3],
        ``stress`` [B,3,3]) and ``energy_std`` [B], ``forces_std`` [N,3], ``stress_std``
        [B,3,3] (same units)."""
        outs = [member(self._within(data, cutoff), compute_forces=compute_forces,
                       compute_stress=compute_stress)
                for member, cutoff in zip(self.members, self.cutoffs)]
        result: dict[str, torch.Tensor] = {}
        for key in outs[0]:
            stacked = torch.stack([out[key].detach() for out in outs])
            result[key] = stacked.mean(0)
            if key in STD_KEYS:
                result[STD_KEYS[key]] = stacked.std(0, correction=0)
        return result

    def _within(self, data: dict[str, torch.Tensor], cutoff: float) -> dict[str, torch.Tensor]:
        """``data`` with only the pairs closer than ``cutoff`` (Å)."""
        if cutoff >= self.cutoff:
            return data
        with torch.no_grad():
            keep = compute_edge_vectors(data)[keys.EDGE_LENGTHS] < cutoff
        return {**data, keys.EDGE_INDEX: data[keys.EDGE_INDEX][:, keep],
                keys.EDGE_CELL_SHIFT: data[keys.EDGE_CELL_SHIFT][keep]}
