"""Behler-Parrinello neural network: one multilayer perceptron per element on symmetry
functions of the neighbourhood (Behler & Parrinello, PRL 98, 146401, 2007).

``E = Σ_i NN_{Z_i}(G(i))``: each atom's energy is the output of its element's network on
its radial (G2) and angular (G5) symmetry functions
(:class:`~mlip_scaling.models.bpnn.descriptors.SymmetryFunctions`), compressed by
``log1p`` (they are non-negative and grow with the number of neighbours). The descriptor
is a differentiable function of the edge vectors, so
:class:`~mlip_scaling.models.potential.Potential` takes forces and stress by autograd
through it. The elements are part of the model config (``elements``: atomic numbers,
comma-separated); each has its own network, so the parameter count grows with their number.
"""

from __future__ import annotations

import torch
from torch import nn

from mlip_scaling import keys
from mlip_scaling.models.blocks import mlp
from mlip_scaling.models.bpnn.descriptors import SymmetryFunctions

__all__ = ["BehlerParrinello", "parse_elements"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "tanh": nn.Tanh}


def parse_elements(text: str) -> list[int]:
    """``"13,28,29"`` -> ``[13, 28, 29]`` (ValueError unless distinct numbers 1-118)."""
    try:
        numbers = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise ValueError(f"elements must be atomic numbers separated by commas, got "
                         f"{text!r}") from None
    if len(set(numbers)) != len(numbers) or not all(1 <= z <= 118 for z in numbers):
        raise ValueError(f"elements must be distinct atomic numbers 1-118, got {text!r}")
    return numbers


class BehlerParrinello(nn.Module):
    """Per-element MLPs on symmetry functions: ``data -> {"energies": [N]}`` (eV per atom).

    Args:
        cutoff: rc (Å) of the symmetry functions.
        elements: atomic numbers the model knows, comma-separated (e.g. ``"13,28,29"``).
        hidden_channels: width of each element's network.
        num_layers: hidden layers of each element's network.
        num_radial: radial (G2) shells.
        num_angular_radial: radial widths of the angular (G5) functions.
        num_zeta: angular exponents ζ = 1, 2, ..., 2^(num_zeta-1) (each with λ = ±1).
        chemical_channels: learned element-weight channels of the descriptor.
        activation: ``"silu"`` or ``"tanh"`` (Behler's choice).
        envelope: cutoff function, ``"polynomial"`` (C2) or ``"cosine"`` (C1).

    Needs ``atomic_numbers`` [N], ``edge_index`` [2, E], ``edge_vectors`` [E, 3] and
    ``edge_lengths`` [E] (Å).
    """

    direct_forces = False

    def __init__(self, cutoff: float, elements: str, hidden_channels: int, num_layers: int,
                 num_radial: int = 8, num_angular_radial: int = 2, num_zeta: int = 3,
                 chemical_channels: int = 2, activation: str = "silu",
                 envelope: str = "polynomial") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use 'silu' or 'tanh'")
        self.cutoff = float(cutoff)
        self.elements = parse_elements(elements)
        slot = torch.full((119,), -1, dtype=torch.long, device="cpu")
        slot[torch.tensor(self.elements, device="cpu")] = torch.arange(
            len(self.elements), device="cpu")
        self.descriptor = SymmetryFunctions(cutoff, len(self.elements), chemical_channels,
                                            num_radial, num_angular_radial, num_zeta, envelope)
        self.register_buffer("slot_of_z", slot.to(self.descriptor.chemical.device),
                             persistent=False)
        width = [self.descriptor.num_features] + [hidden_channels] * num_layers + [1]
        self.networks = nn.ModuleList(mlp(width, _ACTIVATIONS[activation])
                                      for _ in self.elements)

    def _slots(self, numbers: torch.Tensor) -> torch.Tensor:
        """Atomic numbers [N] -> element indices [N] (ValueError for unknown elements)."""
        slots = self.slot_of_z[numbers.clamp(0, 118)]
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return slots
        if numbers.numel() and (int(numbers.max()) > 118 or int(slots.min()) < 0):
            unknown = sorted({int(z) for z in numbers.tolist()} - set(self.elements))
            raise ValueError(f"atomic number(s) {unknown} not among the model's elements "
                             f"{self.elements}")
        return slots

    def features(self, data: dict[str, torch.Tensor],
                 slots: torch.Tensor | None = None) -> torch.Tensor:
        """Raw symmetry functions [N, D] of every atom (``slots``: element indices [N])."""
        slots = self._slots(data[keys.ATOMIC_NUMBERS]) if slots is None else slots
        centre, neighbour = data[keys.EDGE_INDEX]
        return self.descriptor(centre, slots[neighbour], data[keys.EDGE_VECTORS],
                               data[keys.EDGE_LENGTHS], slots.shape[0])

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Data dict -> ``{"energies": [N]}`` (per-atom energies before scale and shift)."""
        slots = self._slots(data[keys.ATOMIC_NUMBERS])
        x = torch.log1p(self.features(data, slots).clamp_min(0.0))
        energies = x.new_zeros(slots.shape[0])
        for k, network in enumerate(self.networks):  # one pass per element, not per atom
            atoms = torch.nonzero(slots == k).squeeze(1)
            energies = energies.index_add(0, atoms, network(x[atoms]).squeeze(-1))
        return {keys.ATOMIC_ENERGIES: energies}
