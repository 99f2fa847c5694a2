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

import torch
from torch import nn

from mlip_scaling import keys
from mlip_scaling.models.blocks import check_atomic_numbers
from mlip_scaling.models.equiformer_v2.attention import EdgeContext, TransformerBlock
from mlip_scaling.models.equiformer_v2.edge_frame import edge_rotation
from mlip_scaling.models.equiformer_v2.heads import (
    STRESS_HEADS,
    DirectForceHead,
    EnergyHead,
    make_stress_head,
)
from mlip_scaling.models.equiformer_v2.layer_norm import NORM_TYPES, make_norm
from mlip_scaling.models.equiformer_v2.radial import (
    EdgeDegreeEmbedding,
    GaussianSmearing,
    smooth_cutoff,
)
from mlip_scaling.models.equiformer_v2.so3 import (
    EdgeRotation,
    num_coefficients,
    prepare_couplings,
)

__all__ = ["EquiformerV2"]

_AVG_NUM_NODES = 77.81317
_AVG_DEGREE = 23.395238876342773
#: fairchem's tolerance (Å²) on squared lengths of the non-strict neighbour cap.
NEIGHBOR_TIE_TOLERANCE = 0.01


class EquiformerV2(nn.Module):
    """EquiformerV2: SO(2) eSCN attention, separable S² activations, RMS norms.

    Args:
        cutoff: interaction radius (Å).
        num_layers: transformer blocks.
        sphere_channels: channels per spherical-harmonic coefficient of node embeddings.
        attn_hidden_channels: channels of the first SO(2) convolution in attention.
        num_heads, attn_alpha_channels, attn_value_channels: attention heads and their
            per-head widths for attention logits and values.
        ffn_hidden_channels: hidden channels of feed-forward networks.
        lmax, mmax: maximum degree and (edge-frame) order.
        grid_resolution: S² grid points per axis (None: the minimal grid for lmax/mmax).
        num_distance_basis: Gaussians on ``[0, cutoff]``.
        edge_channels: hidden width of the radial MLPs.
        max_num_elements: size of the atomic-number embeddings.
        max_neighbors: keep only this many nearest neighbours per atom (None: all).
        max_neighbors_strict: True: exactly the ``max_neighbors`` shortest edges (ties by
            order); False: fairchem's rule, every edge with ``r² <= r²_(k+1) + 0.01 Å²``
            where ``r_(k+1)`` is the (k+1)-th shortest length of that atom.
        norm_type: ``"rms_norm_sh"`` or ``"layer_norm_sh"`` (fairchem's OMat24 norm).
        envelope: smooth cutoff envelope on edges and attention (False: hard cutoff).
        stress_head: ``"equivariant"`` (the package's head) or ``"fairchem"`` (fairchem
            1.10's rank-2 head); only with ``direct_forces``.
        direct_forces: add a direct force head and a rank-2 stress head (non-conservative).
        output_normalizers: fairchem's denormalisation of head outputs, ``{"energy": [rmsd],
            "forces": [rmsd], "stress_isotropic": [rmsd, mean], "stress_anisotropic":
            [rmsd, mean or 5 means]}`` (all optional; stress ones need the fairchem head).
        use_grid_mlp: feed-forward networks as MLPs on the S² grid (OMat24 setting).
        avg_num_nodes, avg_degree: normalisers of the energy sum and degree embedding.
        alpha_drop, drop_path_rate: attention-weight dropout and per-structure stochastic
            depth of block updates while training (fairchem: 0.1 / 0.05).
        parity_average: average the outputs over the structure and its point inversion.
            SO(2) convolutions (their ``W_i`` terms) are chiral, so EquiformerV2 alone is
            only SO(3)-invariant; the average makes it O(3)-invariant (mirror images get
            equal energies) at twice the cost and with no extra parameters.
    """

    def __init__(
        self,
        cutoff: float,
        num_layers: int,
        sphere_channels: int,
        attn_hidden_channels: int,
        num_heads: int,
        attn_alpha_channels: int,
        attn_value_channels: int,
        ffn_hidden_channels: int,
        lmax: int,
        mmax: int,
        grid_resolution: int | None,
        num_distance_basis: int,
        edge_channels: int,
        max_num_elements: int = 96,
        max_neighbors: int | None = None,
        max_neighbors_strict: bool = True,
        norm_type: str = "rms_norm_sh",
        envelope: bool = True,
        stress_head: str = "equivariant",
        direct_forces: bool = False,
        output_normalizers: dict | None = None,
        use_grid_mlp: bool = True,
        avg_num_nodes: float = _AVG_NUM_NODES,
        avg_degree: float = _AVG_DEGREE,
        parity_average: bool = True,
        alpha_drop: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= mmax <= lmax:
            raise ValueError(f"EquiformerV2 needs 0 <= mmax <= lmax, got lmax={lmax} mmax={mmax}")
        if norm_type not in NORM_TYPES:
            raise ValueError(
                f"EquiformerV2 norm_type must be one of {NORM_TYPES}, got {norm_type!r}"
            )
        if stress_head not in STRESS_HEADS:
            raise ValueError(
                f"EquiformerV2 stress_head must be one of {STRESS_HEADS}, got {stress_head!r}"
            )
        cfg = dict(locals())
        cfg.pop("self")
        cfg.pop("__class__", None)
        self.cutoff, self.lmax, self.mmax = float(cutoff), lmax, mmax
        prepare_couplings(lmax)
        self.max_num_elements, self.max_neighbors = max_num_elements, max_neighbors
        self.max_neighbors_strict, self.use_envelope = bool(max_neighbors_strict), bool(envelope)
        self.direct_forces = bool(direct_forces)
        norms = dict(output_normalizers or {})
        self.energy_rmsd = float(norms.pop("energy", [1.0])[0])
        self.force_rmsd = float(norms.pop("forces", [1.0])[0])
        if norms and stress_head != "fairchem":
            raise ValueError(f"EquiformerV2 output_normalizers {sorted(norms)} need the "
                             "fairchem stress head")
        self.parity_average = bool(parity_average)
        self.sphere_channels = sphere_channels
        edge_list = [num_distance_basis, edge_channels, edge_channels]
        self.sphere_embedding = nn.Embedding(max_num_elements, sphere_channels)
        self.distance_expansion = GaussianSmearing(0.0, cutoff, num_distance_basis, 2.0)
        self.edge_degree_embedding = EdgeDegreeEmbedding(
            sphere_channels, lmax, max_num_elements, edge_list, avg_degree
        )
        self.blocks = nn.ModuleList(TransformerBlock(cfg, edge_list) for _ in range(num_layers))
        self.norm = make_norm(norm_type, lmax, sphere_channels)
        self.energy_head = EnergyHead(cfg)
        if self.direct_forces:
            self.force_head = DirectForceHead(cfg, edge_list)
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
            envelope = smooth_cutoff(lengths, self.cutoff)
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
                x, edges, edges.vectors, batch, num_structures * (1 + self.parity_average)
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


def _nearest_mask(
    centre: torch.Tensor, lengths: torch.Tensor, k: int, num_nodes: int
) -> torch.Tensor:
    """[E] bool: the ``k`` shortest edges of every centre atom (ties broken by order)."""
    order = torch.argsort(lengths, stable=True)
    order = order[torch.argsort(centre[order], stable=True)]
    counts = torch.bincount(centre, minlength=num_nodes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device) - starts[centre[order]]
    return rank < k


def _nearest_mask_with_ties(
    centre: torch.Tensor, lengths: torch.Tensor, k: int, num_nodes: int
) -> torch.Tensor:
    """[E] bool: fairchem's non-strict cap. Every edge of a centre with at most ``k``
    edges; otherwise those with ``r² <= r²_(k+1) + NEIGHBOR_TIE_TOLERANCE`` (Å²)."""
    sq = lengths.detach().pow(2)
    order = torch.argsort(sq, stable=True)
    order = order[torch.argsort(centre[order], stable=True)]
    counts = torch.bincount(centre, minlength=num_nodes)
    starts = torch.cumsum(counts, 0) - counts
    threshold = torch.full((num_nodes,), torch.inf, dtype=sq.dtype, device=sq.device)
    has_more = counts > k
    threshold[has_more] = sq[order[starts[has_more] + k]] + NEIGHBOR_TIE_TOLERANCE
    return sq <= threshold[centre]
