"""EquiformerV2 energy model (Liao et al. 2023) with optional OMat24-style direct heads.

Input: a batch dict with ``atomic_numbers`` [N], ``edge_index`` [2, E] (row 0 centre,
row 1 neighbour, periodic images included), ``edge_vectors`` [E, 3] (Å, from positions
that carry the strain, so autograd gives forces and stress) and ``edge_lengths`` [E].
Output: ``{"energies": [N]}`` (eV, per atom); with ``direct_forces=True`` also
``"forces"`` [N, 3] (eV/Å) and ``"stress"`` [B, 3, 3] (eV/Å^3) from heads.

Edge contributions are multiplied by a smooth envelope so the energy is continuous (C²)
as atoms cross the cutoff (``envelope=False``: a hard cutoff, as fairchem); there is no
neighbour cap unless ``max_neighbors`` is set (strict top-k, or fairchem's rule that keeps
every edge within 0.01 Å² of the (k+1)-th shortest squared length).
"""

from __future__ import annotations

import dataclasses
import inspect

import torch
from torch import nn

from mlip_scaling import keys
from mlip_scaling.models.blocks import PolynomialCutoff, check_atomic_numbers
from mlip_scaling.models.equiformer_v2.attention import EdgeContext, TransformerBlock
from mlip_scaling.models.equiformer_v2.config import EquiformerV2Config
from mlip_scaling.models.equiformer_v2.edge_frame import edge_rotation
from mlip_scaling.models.equiformer_v2.heads import DirectForceHead, EnergyHead, make_stress_head
from mlip_scaling.models.equiformer_v2.layer_norm import make_norm
from mlip_scaling.models.equiformer_v2.radial import EdgeDegreeEmbedding, GaussianSmearing
from mlip_scaling.models.equiformer_v2.so3 import (
    EdgeRotation,
    num_coefficients,
    prepare_couplings,
)

__all__ = ["EquiformerV2", "EquiformerV2Config"]

#: fairchem's tolerance (Å²) on squared lengths of the non-strict neighbour cap.
NEIGHBOR_TIE_TOLERANCE = 0.01


class EquiformerV2(nn.Module):
    """EquiformerV2: SO(2) eSCN attention, separable S² activations, RMS norms.

    Built from an :class:`EquiformerV2Config`, or from its fields (positionally in field
    order, or by name), which are checked and frozen into one; see that class for the
    meaning of every hyperparameter.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()
        if len(args) == 1 and not kwargs and isinstance(args[0], EquiformerV2Config):
            cfg = args[0]
        else:
            cfg = EquiformerV2Config(*args, **kwargs)
        self.config = cfg
        self.cutoff, self.lmax, self.mmax = float(cfg.cutoff), cfg.lmax, cfg.mmax
        prepare_couplings(cfg.lmax)
        self.max_num_elements, self.max_neighbors = cfg.max_num_elements, cfg.max_neighbors
        self.max_neighbors_strict = bool(cfg.max_neighbors_strict)
        self.use_envelope = bool(cfg.envelope)
        self.direct_forces = bool(cfg.direct_forces)
        norms = cfg.output_normalizers or {}
        self.energy_rmsd = float(norms.get("energy", [1.0])[0])
        self.force_rmsd = float(norms.get("forces", [1.0])[0])
        self.parity_average = bool(cfg.parity_average)
        self.sphere_channels = cfg.sphere_channels
        radial = cfg.radial_channels
        self.sphere_embedding = nn.Embedding(cfg.max_num_elements, cfg.sphere_channels)
        self.distance_expansion = GaussianSmearing(0.0, cfg.cutoff, cfg.num_distance_basis, 2.0)
        self.cutoff_envelope = PolynomialCutoff(cfg.cutoff, p=3)  # 1 - 10u³ + 15u⁴ - 6u⁵
        self.edge_degree_embedding = EdgeDegreeEmbedding(
            sphere_channels=cfg.sphere_channels, lmax=cfg.lmax,
            max_num_elements=cfg.max_num_elements, edge_channels=radial,
            rescale=cfg.avg_degree,
        )
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.num_layers))
        self.norm = make_norm(cfg.norm_type, cfg.lmax, cfg.sphere_channels)
        self.energy_head = EnergyHead(cfg)
        if self.direct_forces:
            self.force_head = DirectForceHead(cfg)
            self.stress_head = make_stress_head(cfg)
        self._init_linear_weights()

    def _init_linear_weights(self) -> None:
        """Linear layers outside radial MLPs: N(0, 1/fan_in), zero bias."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and "rad_func" not in name:
                nn.init.normal_(module.weight, 0.0, module.in_features**-0.5)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def backbone(self, data: dict) -> tuple[torch.Tensor, EdgeContext]:
        """Node embeddings [N, (lmax+1)^2, sphere_channels] after the final norm."""
        numbers = data[keys.ATOMIC_NUMBERS]
        check_atomic_numbers(numbers, self.max_num_elements)
        edges = self.edge_context(data)
        x = self.sphere_embedding(numbers)
        x = torch.cat(
            [x[:, None], x.new_zeros(x.shape[0], num_coefficients(self.lmax) - 1, x.shape[1])], 1
        )
        x = x + self.edge_degree_embedding(
            numbers, edges.features, edges.index, edges.envelope, edges.rotation, numbers.shape[0]
        )
        for block in self.blocks:
            x = block(x, edges)
        return self.norm(x), edges

    def edge_context(self, data: dict) -> EdgeContext:
        """Edges within the cutoff (optionally capped), their features, frames, envelope."""
        index, vectors = data[keys.EDGE_INDEX], data[keys.EDGE_VECTORS]
        lengths = torch.linalg.vector_norm(vectors, dim=-1)
        keep = lengths < self.cutoff
        if self.max_neighbors is not None:
            cap = _nearest_mask if self.max_neighbors_strict else _nearest_mask_with_ties
            keep &= cap(index[0], lengths, self.max_neighbors, data[keys.ATOMIC_NUMBERS].shape[0])
        index, vectors, lengths = index[:, keep], vectors[keep], lengths[keep]
        rotation = EdgeRotation(edge_rotation(vectors), self.lmax, self.mmax)
        features = self.distance_expansion(lengths)
        if self.use_envelope:
            envelope = self.cutoff_envelope(lengths)
        else:  # weights of exactly 1: plain sums and softmax
            envelope = torch.ones_like(lengths)
        numbers = data[keys.ATOMIC_NUMBERS]
        batch = data.get(keys.BATCH)
        if batch is None:
            batch = torch.zeros(numbers.shape[0], dtype=torch.long, device=numbers.device)
        return EdgeContext(index, features, envelope, rotation, numbers, batch, vectors)

    def forward(self, data: dict) -> dict:
        """Per-atom energies (and direct forces/stress when configured)."""
        batch = data.get(keys.BATCH)
        if batch is None:
            batch = torch.zeros(
                data[keys.ATOMIC_NUMBERS].shape[0],
                dtype=torch.long,
                device=data[keys.EDGE_INDEX].device,
            )
        num_structures = data[keys.CELL].shape[0] if keys.CELL in data else int(batch.max()) + 1
        n = batch.shape[0]
        if self.parity_average:
            data = _with_inverted_copy(data, batch, num_structures)
            batch = data[keys.BATCH]
        x, edges = self.backbone(data)
        energies = self.energy_head(x) * self.energy_rmsd
        out = {}
        if self.direct_forces:
            forces = self.force_head(x, edges) * self.force_rmsd
            stress = self.stress_head(
                x, edges, batch, num_structures * (1 + self.parity_average)
            )
        if self.parity_average:
            energies = 0.5 * (energies[:n] + energies[n:])
            if self.direct_forces:  # forces are odd and stress even under inversion
                forces = 0.5 * (forces[:n] - forces[n:])
                stress = 0.5 * (stress[:num_structures] + stress[num_structures:])
        out[keys.ATOMIC_ENERGIES] = energies
        if self.direct_forces:
            out[keys.FORCES], out[keys.STRESS] = forces, stress
        return out


def _init_signature() -> inspect.Signature:
    """``(self, <the fields of EquiformerV2Config>)``: what the registry checks configs
    against (known keys, required keys)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("self", kind)]
    for f in dataclasses.fields(EquiformerV2Config):
        default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        params.append(inspect.Parameter(f.name, kind, default=default))
    return inspect.Signature(params)


EquiformerV2.__init__.__signature__ = _init_signature()


def _with_inverted_copy(data: dict, batch: torch.Tensor, num_structures: int) -> dict:
    """The batch followed by its point inversion (atoms ``N..2N-1``, edge vectors negated)."""
    n = batch.shape[0]
    index = data[keys.EDGE_INDEX]
    return {
        keys.ATOMIC_NUMBERS: data[keys.ATOMIC_NUMBERS].repeat(2),
        keys.EDGE_INDEX: torch.cat([index, index + n], dim=1),
        keys.EDGE_VECTORS: torch.cat([data[keys.EDGE_VECTORS], -data[keys.EDGE_VECTORS]]),
        keys.BATCH: torch.cat([batch, batch + num_structures]),
    }


def _by_centre_then(key: torch.Tensor, centre: torch.Tensor, num_nodes: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges sorted by centre atom, then by ``key`` [E] (stable): the order [E], the edge
    count of every atom [num_nodes] and where its edges start in the order [num_nodes]."""
    order = torch.argsort(key, stable=True)
    order = order[torch.argsort(centre[order], stable=True)]
    counts = torch.bincount(centre, minlength=num_nodes)
    return order, counts, torch.cumsum(counts, 0) - counts


def _nearest_mask(
    centre: torch.Tensor, lengths: torch.Tensor, k: int, num_nodes: int
) -> torch.Tensor:
    """[E] bool: the ``k`` shortest edges of every centre atom (ties broken by order)."""
    order, _, starts = _by_centre_then(lengths, centre, num_nodes)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device) - starts[centre[order]]
    return rank < k


def _nearest_mask_with_ties(
    centre: torch.Tensor, lengths: torch.Tensor, k: int, num_nodes: int
) -> torch.Tensor:
    """[E] bool: fairchem's non-strict cap. Every edge of a centre with at most ``k``
    edges; otherwise those with ``r² <= r²_(k+1) + NEIGHBOR_TIE_TOLERANCE`` (Å²)."""
    sq = lengths.detach().pow(2)
    order, counts, starts = _by_centre_then(sq, centre, num_nodes)
    threshold = torch.full((num_nodes,), torch.inf, dtype=sq.dtype, device=sq.device)
    has_more = counts > k
    threshold[has_more] = sq[order[starts[has_more] + k]] + NEIGHBOR_TIE_TOLERANCE
    return sq <= threshold[centre]
