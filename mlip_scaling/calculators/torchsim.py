"""torch-sim model interface: batched MD and relaxation of many structures on one device.

Needs the optional extra ``torch-sim-atomistic`` (``pip install mlip-scaling[torchsim]``)::

    import torch_sim as ts
    from mlip_scaling.calculators.torchsim import ScalingTorchSimModel
    model = ScalingTorchSimModel("model.pt", dtype="float64")
    final = ts.integrate(system=[atoms1, atoms2], model=model, integrator=ts.nvt_langevin,
                         n_steps=1000, temperature=300, timestep=0.002)

Units follow torch-sim's metal units: eV, Å; stress in eV/Å^3 with ASE's sign.
"""

from __future__ import annotations

import os
from functools import partial
from itertools import accumulate

import numpy as np
import torch

from mlip_scaling import keys
from mlip_scaling.calculators.inference import StructureChecker, prepare_potential, structure_name
from mlip_scaling.data.atomic_data import AtomicData, collate
from mlip_scaling.devices import resolve_device, resolve_dtype
from mlip_scaling.models.potential import Potential

try:
    import torch_sim as ts
    from torch_sim.models.interface import ModelInterface

    from mlip_scaling.data.device_neighbors import DeviceNeighborList
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the torch-sim interface needs torch-sim: pip install 'mlip-scaling[torchsim]' "
        f"(torch-sim-atomistic); import failed with: {exc}"
    ) from exc

__all__ = ["ScalingTorchSimModel"]


class ScalingTorchSimModel(ModelInterface):
    """An mlip-scaling potential as a torch-sim ``ModelInterface``.

    Args:
        model: model file path (loaded safely) or a loaded ``Potential``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        dtype: ``"float32"`` or ``"float64"`` (torch's global default is untouched).
        compute_forces: return forces [N,3] (eV/Å).
        compute_stress: return stress [B,3,3] (eV/Å^3, ASE sign; zero for systems that
            are not periodic in all three directions).

    ``forward(state)`` returns ``{"energy": [B], "forces": [N,3], "stress": [B,3,3]}``.
    Neighbour lists are built per system at every call on the model's device (vesin's
    torch interface): positions are not copied to the host.
    """

    def __init__(
        self,
        model: str | os.PathLike | Potential,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float64",
        compute_forces: bool = True,
        compute_stress: bool = True,
    ) -> None:
        super().__init__()
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype)
        self._compute_forces = bool(compute_forces)
        self._compute_stress = bool(compute_stress)
        self._memory_scales_with = "n_atoms_x_density"
        self.potential = prepare_potential(model, self._device, self._dtype)
        self.cutoff = self.potential.cutoff
        self.check = StructureChecker(self.potential.species, self.cutoff)
        self.neighbors = DeviceNeighborList(self.cutoff)

    def forward(self, state, **kwargs) -> dict[str, torch.Tensor]:
        """Energy [B] (eV), forces [N,3] (eV/Å) and stress [B,3,3] (eV/Å^3) of ``state``.

        ``state`` is a ``torch_sim.SimState`` or a dict with ``positions``, ``cell``
        (torch-sim's column-vector convention), ``pbc``, ``atomic_numbers`` and
        ``system_idx``.
        """
        if isinstance(state, dict):
            state = ts.SimState(**state, masses=torch.ones_like(state["positions"][:, 0]))
        data = self._batch(state)
        out = self.potential(data, compute_forces=self._compute_forces,
                             compute_stress=self._compute_stress)
        results = {"energy": out[keys.ENERGY].detach()}
        if self._compute_forces:
            results["forces"] = out[keys.FORCES].detach()
        if self._compute_stress:
            results["stress"] = out[keys.STRESS].detach()
        return results

    def _batch(self, state) -> AtomicData:
        """The model's batch dict (neighbour lists included) of a torch-sim state; the
        positions stay on the device (only per-system summaries reach the host)."""
        positions = state.positions.detach().to(device=self._device, dtype=self._dtype)
        cells = state.row_vector_cell.detach().to(device=self._device, dtype=self._dtype)
        numbers = state.atomic_numbers.to(self._device, torch.long)
        n_systems = cells.shape[0]
        counts = torch.bincount(state.system_idx, minlength=n_systems).cpu().tolist()
        bounds = [0, *accumulate(counts)]
        pbc = _pbc(state.pbc, n_systems)
        self._check_elements(numbers, bounds)

        def name(b: int) -> str:
            return structure_name(numbers[bounds[b]:bounds[b + 1]].cpu().numpy(), b, "system")

        lists = self.neighbors(positions, cells, pbc, counts, name)
        pbc_t = torch.from_numpy(pbc.copy()).to(self._device)
        batch = collate([{
            keys.POSITIONS: positions[bounds[b]:bounds[b + 1]],
            keys.ATOMIC_NUMBERS: numbers[bounds[b]:bounds[b + 1]],
            keys.CELL: cells[b:b + 1],
            keys.PBC: pbc_t[b:b + 1],
            keys.EDGE_INDEX: edge_index,
            keys.EDGE_CELL_SHIFT: shifts,
        } for b, (edge_index, shifts) in enumerate(lists)])
        batch[keys.EDGE_CELL_SHIFT] = batch[keys.EDGE_CELL_SHIFT].to(self._dtype)  # one cast
        return batch

    def _check_elements(self, numbers: torch.Tensor, bounds: list[int]) -> None:
        """Raise the checker's error naming the first system with an element unknown to
        the model; one flag reaches the host when all are known."""
        if self.check.all_known(numbers):
            return
        numbers_np = numbers.cpu().numpy()
        for b in range(len(bounds) - 1):
            part = numbers_np[bounds[b]:bounds[b + 1]]
            self.check.elements(part, partial(structure_name, part, b, "system"))


def _pbc(pbc, n_systems: int) -> np.ndarray:
    """torch-sim's ``pbc`` (one bool, [3] or [B,3]) as a [B,3] bool array."""
    flags = np.asarray(pbc.cpu() if isinstance(pbc, torch.Tensor) else pbc, dtype=bool)
    if flags.ndim == 0:
        flags = np.repeat(flags, 3)
    return np.ascontiguousarray(np.broadcast_to(flags, (n_systems, 3)))
