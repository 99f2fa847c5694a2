"""The contract between an energy model and :class:`~mlip_scaling.models.potential.Potential`.

A model family is one module with a class satisfying :class:`EnergyModel` (plus its size
presets and a line in ``registry.FAMILIES``). ``Potential`` turns it into energies, forces
and stress; the model never computes derivatives of its own output.
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import AtomicData

__all__ = ["EnergyModel", "INPUTS", "OUTPUTS", "DIRECT_OUTPUTS"]

#: The fields ``Potential`` hands every model (a model reads those it needs): the
#: structure, the batch layout and the neighbour list with its edge vectors and lengths
#: (computed from positions and cell, so gradients reach both).
INPUTS: Final = (keys.POSITIONS, keys.ATOMIC_NUMBERS, keys.CELL, keys.PBC, keys.BATCH,
                 keys.NUM_ATOMS, keys.EDGE_INDEX, keys.EDGE_CELL_SHIFT, keys.EDGE_VECTORS,
                 keys.EDGE_LENGTHS)
#: What every model returns: ``energies`` [N], per-atom energies before the potential's
#: scale, shift and per-element reference energies are applied.
OUTPUTS: Final = (keys.ATOMIC_ENERGIES,)
#: What a model with ``direct_forces`` returns as well: ``forces`` [N,3] and ``stress``
#: [B,3,3] (zero for structures not periodic in all directions), in the same raw scale.
DIRECT_OUTPUTS: Final = (keys.FORCES, keys.STRESS)


@runtime_checkable
class EnergyModel(Protocol):
    """An energy model: ``model(data) -> {"energies": [N], ...}`` (see :data:`INPUTS`,
    :data:`OUTPUTS`, :data:`DIRECT_OUTPUTS`).

    Attributes:
        cutoff: neighbour-list radius (Å) the model was built for; pairs beyond it must
            not change the energy.
        direct_forces: the model predicts forces and stress with heads (non-conservative)
            instead of leaving them to autograd of the energy.
    """

    cutoff: float
    direct_forces: bool

    def __call__(self, data: AtomicData) -> AtomicData: ...
