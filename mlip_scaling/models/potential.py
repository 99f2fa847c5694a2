"""Potential: the one place where energy, forces and stress are computed.

Any energy model (an :class:`~mlip_scaling.models.protocol.EnergyModel`:
``model(data) -> {"energies": [N]}``) becomes a potential:

* total energy ``E_b = Σ_i (scale · e_i + shift + E_ref[Z_i])`` (eV),
* forces ``F = −∂E/∂r`` (eV/Å),
* stress ``σ = (1/V) ∂E/∂ε`` (eV/Å^3, ASE sign) with a symmetric strain ``ε``
  applied to positions and cell before edge vectors are formed.

A model whose attribute ``direct_forces`` is true predicts forces (and stress) with
heads instead; that is always an explicit choice of the model config. Every model gets the
fields of :data:`~mlip_scaling.models.protocol.INPUTS` (``batch`` and ``num_atoms`` are
added for a single structure that lacks them).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import nn

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import MAX_ATOMIC_NUMBER, AtomicData, compute_edge_vectors
from mlip_scaling.models.blocks import scatter_sum
from mlip_scaling.models.protocol import EnergyModel

__all__ = ["Potential", "MAX_Z"]

#: size of the per-element tables (indexed by atomic number)
MAX_Z = MAX_ATOMIC_NUMBER + 1


class Potential(nn.Module):
    """Wrap an energy model into a potential with forces and stress.

    Args:
        model: energy model (:class:`EnergyModel`: per-atom energies under
            ``keys.ATOMIC_ENERGIES``, a ``cutoff`` and a ``direct_forces`` flag).
        family: registry name of the model family (to rebuild it from a checkpoint).
        config: JSON-able hyperparameters of the model (must contain ``cutoff``, Å).
        species: atomic numbers the model was trained on.
        reference_energies: per-element energy in eV, ``{Z: E_Z}``.
        scale, shift: per-atom energy scale (eV) and shift (eV) applied to model output.
    """

    def __init__(
        self,
        model: EnergyModel,
        family: str,
        config: dict,
        species: Sequence[int],
        reference_energies: dict[int, float] | None = None,
        scale: float = 1.0,
        shift: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(model, EnergyModel):
            missing = [a for a in ("cutoff", "direct_forces") if not hasattr(model, a)]
            raise TypeError(f"{type(model).__name__} is not an EnergyModel: it lacks "
                            f"{', '.join(missing) or '__call__'}")
        self.model = model
        self.family = family
        self.config = dict(config)
        self.cutoff = float(config["cutoff"])
        self.species = sorted(int(z) for z in species)
        ref = torch.zeros(MAX_Z, dtype=torch.float64)
        for z, e in (reference_energies or {}).items():
            ref[int(z)] = float(e)
        self.register_buffer("reference_energies", ref)
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))
        self.register_buffer("shift", torch.tensor(float(shift), dtype=torch.float64))

    @property
    def direct_forces(self) -> bool:
        """Forces and stress come from the model's heads, not from autograd."""
        return bool(self.model.direct_forces)

    @property
    def dtype(self) -> torch.dtype:
        return self.scale.dtype

    def reference_dict(self) -> dict[int, float]:
        """Per-element reference energies (eV) of the known species."""
        return {z: float(self.reference_energies[z]) for z in self.species}

    def forward(
        self,
        data: AtomicData,
        compute_forces: bool = True,
        compute_stress: bool = True,
        create_graph: bool = False,
    ) -> AtomicData:
        """Predict ``energy`` [B], ``energies`` [N], ``forces`` [N,3], ``stress`` [B,3,3].

        ``data`` is a batch (or single structure) with ``edge_index`` and
        ``edge_cell_shift`` from the neighbour list. Stress is zero for structures that
        are not periodic in all three directions. ``create_graph=True`` keeps the graph
        of forces and stress for training on them.
        """
        data = dict(data)
        pos = data[keys.POSITIONS]
        n_struct = data[keys.CELL].shape[0]
        if keys.BATCH not in data:
            data[keys.BATCH] = torch.zeros(len(pos), dtype=torch.long, device=pos.device)
        batch = data[keys.BATCH]
        if keys.NUM_ATOMS not in data:
            data[keys.NUM_ATOMS] = torch.bincount(batch, minlength=n_struct)
        gradient = not self.direct_forces and (compute_forces or compute_stress)
        # direct heads trained with create_graph=True keep the caller's grad mode
        grad_mode = nullcontext() if create_graph else torch.no_grad()
        with torch.enable_grad() if gradient else grad_mode:
            pos, cell, strain = self._strained(data, gradient and compute_stress)
            if gradient and compute_forces and not pos.requires_grad:
                pos = pos.requires_grad_(True)
            data[keys.POSITIONS], data[keys.CELL] = pos, cell
            out = self.model(compute_edge_vectors(data))
            atomic = self._atomic_energies(out[keys.ATOMIC_ENERGIES], data[keys.ATOMIC_NUMBERS])
            energy = scatter_sum(atomic, batch, n_struct)
            result = {keys.ENERGY: energy, keys.ATOMIC_ENERGIES: atomic}
            if self.direct_forces:
                result.update(self._direct(out, data, compute_forces, compute_stress))
            elif gradient:
                inv_vol = self._inverse_volume(cell.detach(), data[keys.PBC])
                result.update(
                    self._gradients(energy, pos, strain, inv_vol, compute_forces, create_graph)
                )
        return result

    def _strained(
        self, data: AtomicData, with_strain: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        pos, cell = data[keys.POSITIONS], data[keys.CELL]
        if not with_strain:
            return pos, cell, None
        disp = torch.zeros_like(cell, requires_grad=True)
        sym = 0.5 * (disp + disp.transpose(1, 2))
        pos = pos + torch.einsum("ni,nij->nj", pos, sym[data[keys.BATCH]])
        cell = cell + torch.bmm(cell, sym)
        return pos, cell, disp

    def _atomic_energies(self, raw: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        dtype = raw.dtype
        ref = self.reference_energies.to(dtype)[numbers]
        return raw * self.scale.to(dtype) + self.shift.to(dtype) + ref

    def _gradients(
        self,
        energy: torch.Tensor,
        pos: torch.Tensor,
        strain: torch.Tensor | None,
        inv_volume: torch.Tensor,
        compute_forces: bool,
        create_graph: bool,
    ) -> AtomicData:
        inputs = ([pos] if compute_forces else []) + ([strain] if strain is not None else [])
        grads = torch.autograd.grad(
            energy.sum(), inputs, create_graph=create_graph, allow_unused=True
        )
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
        out: AtomicData = {}
        if compute_forces:
            out[keys.FORCES] = -grads[0]
        if strain is not None:
            out[keys.STRESS] = grads[-1] * inv_volume
        return out

    def _direct(
        self, out: AtomicData, data: AtomicData, compute_forces: bool, compute_stress: bool
    ) -> AtomicData:
        scale = self.scale.to(out[keys.ATOMIC_ENERGIES].dtype)
        result: AtomicData = {}
        if compute_forces:
            result[keys.FORCES] = out[keys.FORCES] * scale
        if compute_stress and keys.STRESS in out:
            result[keys.STRESS] = out[keys.STRESS] * scale
        return result

    @staticmethod
    def _inverse_volume(cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
        """[B,1,1] 1/V for fully periodic structures, 0 otherwise (no stress)."""
        volume = torch.linalg.det(cell).abs()
        periodic = pbc.all(dim=1) & (volume > 1e-12)
        inv = torch.where(periodic, 1.0 / volume.clamp_min(1e-12), torch.zeros_like(volume))
        return inv.reshape(-1, 1, 1)
