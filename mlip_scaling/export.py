"""``mlip-scaling export MODEL.pt --out model.pt2``: a ``torch.export`` program of a model.

The ``.pt2`` file is a :func:`torch.export.save` ExportedProgram that runs with plain torch
(``torch.export.load``), without this package. It computes the energy of one structure::

    energy, energies = program.module()(positions, cell, atomic_numbers,
                                        edge_index, edge_cell_shift, strain)

inputs (float tensors in the dtype named in the metadata):
    positions [N, 3] (Å); cell [3, 3] (Å, rows are lattice vectors);
    atomic_numbers [N] int64; edge_index [2, E] int64 (centre, neighbour) and
    edge_cell_shift [E, 3] (integer cell shifts as floats) of a neighbour list with the
    model's cutoff, edge vectors being ``r_j - r_i + shift @ cell``;
    strain [3, 3]: zeros (a symmetric strain ``ε = (s + sᵀ)/2`` applied to positions and cell).
outputs: energy [] (eV) and per-atom energies [N] (eV), reference energies included.

N >= 1 and E >= 0 are dynamic (with E = 0 the energy does not depend on the positions:
pass ``allow_unused=True`` to ``torch.autograd.grad`` and read ``None`` as zeros).
Forces and stress are derivatives taken on the loaded program::

    positions.requires_grad_(True); strain.requires_grad_(True)
    energy, _ = program.module()(positions, cell, numbers, edge_index, shifts, strain)
    d_pos, d_strain = torch.autograd.grad(energy, [positions, strain])
    forces = -d_pos                                   # eV/Å
    stress = d_strain / abs(torch.linalg.det(cell))   # eV/Å^3, ASE sign (periodic cells)

They are not inside the program: ``torch.export`` cannot trace ``torch.autograd.grad`` in
the forward (it leaves an untraceable constant behind). The file's extra entry
``metadata.json`` names the family, cutoff (Å), species, dtype and these inputs/outputs.

Models with direct force heads (``eqv2d-<size>``, ``eqv2-S/M/L``; metadata
``"direct_forces": true``) return two more outputs, their heads' predictions (not energy
derivatives): forces [N, 3] (eV/Å) and stress [3, 3] (eV/Å^3, meaningful for cells
periodic in all three directions); for them ``strain`` must stay zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import compute_edge_vectors
from mlip_scaling.errors import ConfigError
from mlip_scaling.models.potential import Potential

__all__ = ["DIRECT_OUTPUTS", "EXPORT_FORMAT", "StructureEnergy", "export_potential",
           "save_exported"]

EXPORT_FORMAT = "mlip-scaling-export/1"
INPUTS = ["positions", "cell", "atomic_numbers", "edge_index", "edge_cell_shift", "strain"]
OUTPUTS = ["energy", "energies"]
DIRECT_OUTPUTS = ["forces", "stress"]


class StructureEnergy(nn.Module):
    """Energy of one structure as a function of plain tensors (see the module docstring)."""

    def __init__(self, potential: Potential) -> None:
        super().__init__()
        self.potential = potential

    def forward(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        edge_cell_shift: torch.Tensor,
        strain: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """-> energy [] (eV), per-atom energies [N] (eV); direct-force models also
        forces [N, 3] (eV/Å) and stress [3, 3] (eV/Å^3) from their heads."""
        sym = 0.5 * (strain + strain.transpose(0, 1))
        data = {
            keys.POSITIONS: positions + positions @ sym,
            keys.CELL: (cell + cell @ sym).unsqueeze(0),
            keys.ATOMIC_NUMBERS: atomic_numbers,
            keys.BATCH: torch.zeros_like(atomic_numbers),
            keys.EDGE_INDEX: edge_index,
            keys.EDGE_CELL_SHIFT: edge_cell_shift,
        }
        out = self.potential.model(compute_edge_vectors(data))
        atomic = self.potential._atomic_energies(out[keys.ATOMIC_ENERGIES], atomic_numbers)
        if not self.potential.direct_forces:
            return atomic.sum(), atomic
        scale = self.potential.scale.to(atomic.dtype)
        return atomic.sum(), atomic, out[keys.FORCES] * scale, out[keys.STRESS][0] * scale


def _example_inputs(potential: Potential, n: int = 3) -> tuple[torch.Tensor, ...]:
    """A small chain of the model's first species with all pairs as edges."""
    dtype = potential.dtype
    spacing = 0.5 * potential.cutoff / n
    positions = torch.arange(n, dtype=dtype)[:, None] * torch.tensor([spacing, 0.3, 0.1],
                                                                      dtype=dtype)
    numbers = torch.full((n,), potential.species[0], dtype=torch.long)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    edge_index = torch.tensor(pairs, dtype=torch.long).T.contiguous()
    cell = torch.eye(3, dtype=dtype) * (4.0 * potential.cutoff)
    shifts = torch.zeros(len(pairs), 3, dtype=dtype)
    return positions, cell, numbers, edge_index, shifts, torch.zeros(3, 3, dtype=dtype)


def export_potential(potential: Potential) -> torch.export.ExportedProgram:
    """Trace ``potential`` (eval mode, its dtype, CPU) with dynamic atom and edge counts."""
    module = StructureEnergy(potential).eval()
    example = _example_inputs(potential)
    module(*example)  # fills the models' lazily built constant tables before tracing
    atoms, edges = torch.export.Dim("atoms", min=1), torch.export.Dim("edges", min=0)
    dynamic = ({0: atoms}, None, {0: atoms}, {1: edges}, {0: edges}, None)
    return torch.export.export(module, example, dynamic_shapes=dynamic, strict=False)


def save_exported(model_path: str | Path, out: str | Path,
                  dtype: torch.dtype = torch.float32) -> dict:
    """Export the model file ``model_path`` to ``out`` (.pt2); returns the metadata written."""
    from mlip_scaling.checkpoint import load_potential

    potential = load_potential(model_path, dtype=dtype)
    try:
        program = export_potential(potential)
    except ConfigError as exc:
        raise ConfigError(f"{model_path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - tracing failures of any kind become one line
        detail = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{model_path}: torch.export failed for family "
                          f"{potential.family!r}: {detail}") from None
    metadata = {
        "format": EXPORT_FORMAT, "family": potential.family, "cutoff": potential.cutoff,
        "species": potential.species, "dtype": str(dtype).removeprefix("torch."),
        "inputs": INPUTS, "source": str(Path(model_path).name),
        "outputs": OUTPUTS + (DIRECT_OUTPUTS if potential.direct_forces else []),
        "direct_forces": potential.direct_forces,
    }
    out = Path(out)
    tmp = out.with_suffix(".tmp.pt2")
    torch.export.save(program, tmp, extra_files={"metadata.json": json.dumps(metadata)})
    tmp.replace(out)
    return metadata
