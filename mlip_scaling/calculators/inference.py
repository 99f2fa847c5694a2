"""What the ASE calculator and the torch-sim model share: loading a potential for
inference, the checks of incoming structures, how errors name a structure, and the
canonical neighbour-list order."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

import numpy as np
import torch
from ase.data import chemical_symbols

from mlip_scaling.checkpoint import load_potential
from mlip_scaling.data.neighbors import Where, check_geometry, neighbor_list
from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.models.potential import MAX_Z, Potential

__all__ = ["ModelSpec", "StructureChecker", "compiled", "prepare_potential",
           "sorted_neighbors", "structure_name", "to_numpy"]

#: a model file path or a loaded potential
ModelSpec = str | os.PathLike | Potential


def prepare_potential(model: ModelSpec, device: torch.device, dtype: torch.dtype) -> Potential:
    """Load a model file (safe loading) or adopt a loaded potential, in eval mode.

    A given :class:`Potential` is used as is (and put in eval mode) when its device and
    dtype already match; otherwise a converted copy is made and the caller's is untouched.
    """
    if isinstance(model, (str, os.PathLike)):
        return load_potential(model, device=device, dtype=dtype)
    if not isinstance(model, Potential):
        raise ConfigError(
            f"model must be a model file path or a Potential, got {type(model).__name__}"
        )
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if any(t.dtype != dtype or t.device != device for t in tensors):
        model = copy.deepcopy(model).to(device=device, dtype=dtype)
    return model.eval()


def compiled(potential: Potential) -> Potential:
    """A potential sharing ``potential``'s weights whose energy model is torch-compiled."""
    runner = Potential(
        torch.compile(potential.model, dynamic=True), potential.family, potential.config,
        potential.species, potential.reference_dict(), float(potential.scale),
        float(potential.shift),
    )
    return runner.to(device=potential.scale.device, dtype=potential.dtype).eval()


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A prediction as a float64 numpy array on the host (ASE's and numpy's precision)."""
    return tensor.detach().to("cpu", torch.float64).numpy()


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
        self._on_device: dict[torch.device, torch.Tensor] = {}

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

    def all_known(self, numbers: torch.Tensor) -> bool:
        """Whether every atomic number in ``numbers`` [N] is known to the model, computed
        where ``numbers`` live (one flag reaches the host)."""
        known = self._on_device.get(numbers.device)
        if known is None:
            known = self._on_device[numbers.device] = torch.from_numpy(self._known).to(
                numbers.device)
        inside = (numbers >= 0) & (numbers < len(known))
        return bool((known[numbers.clamp(0, len(known) - 1)] & inside).all())
