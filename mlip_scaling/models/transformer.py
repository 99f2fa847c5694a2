"""A pre-LayerNorm transformer over atom tokens with attention over neighbours.

Each atom is one token (an embedding of its atomic number). In every layer a token
attends to itself and to its neighbours within the cutoff (periodic images included
through the edge list). Distances enter in two places:

* an attention bias per head, linear in a radial basis of ``|r_ij|``;
* a value filter per channel (``v_j ⊙ W φ(|r_ij|)``, continuous-filter style).

Attention is an envelope-weighted softmax over ``{self} ∪ neighbours``:
``α_ij = u(r_ij) exp(a_ij) / (exp(a_ii) + Σ_k u(r_ik) exp(a_ik))`` with the smooth
envelope ``u`` (value and first two derivatives vanish at the cutoff for the polynomial
envelope). A neighbour crossing the cutoff therefore enters and leaves continuously, and an
isolated atom attends to itself alone. Logits are soft-capped (``c·tanh(a/c)``) so the
self term never underflows next to the largest logit.

Options (off by default, so that older checkpoints build the same model):

* ``moment_channels`` V > 0: a third sub-layer per block sums, per centre atom and channel,
  edge weights ``(W φ(r_ij)) ⊙ (W' x_j) u(r_ij)`` (a density: attention only averages),
  and with ``moment_order`` 1-2 the neighbour directions ``r̂_ij`` and their traceless outer
  products ``r̂ r̂ᵀ − I/3``, whose invariant squared norms (``Σ_jk w_j w_k P_l(cos θ_jk)``)
  are three-body terms. Distances alone (the attention) see angles only through depth.
* ``species_radial``: the radial basis of each edge is scaled per channel by
  ``1 + a_{Z_i} + b_{Z_j}`` (learned, zero at initialisation): pair-dependent radial weights.
* ``direction_features``: the edge features are ``[φ(r), φ(r) ⊗ r̂]`` (4R instead of R) with
  the unit vector's lab-frame Cartesian components, so attention biases and filters see
  directions as raw numbers: **not rotation invariant** (the family ``transformer-vec``, the
  unconstrained member of the symmetry comparison). Still translation and permutation
  invariant, periodic (images through the edges), smooth at the cutoff and conservative.

Without ``direction_features`` only distances and atomic numbers enter, so the energy is
invariant under rotations, reflections, translations and permutations; forces and stress
come from :class:`~mlip_scaling.models.potential.Potential` as derivatives of the energy.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from mlip_scaling import keys
from mlip_scaling.models.blocks import (
    build_envelope,
    build_radial_basis,
    check_atomic_numbers,
    mlp,
    scatter_sum,
    segment_softmax,
)

__all__ = ["TransformerEnergyModel", "NeighbourAttention", "TransformerLayer", "EdgeGraph",
           "NeighbourMoments", "AtomTokenModel"]


class EdgeGraph(NamedTuple):
    """What every layer reads about the edges: ``edge_index`` [2, E] (centre, neighbour),
    ``radial`` [E, R] basis of ``|r_ij|``, ``envelope`` [E] and unit vectors ``unit`` [E, 3]
    (None when no layer needs directions)."""

    edge_index: torch.Tensor
    radial: torch.Tensor
    envelope: torch.Tensor
    unit: torch.Tensor | None


class AtomTokenModel(nn.Module):
    """Base of the transformer families: cutoff, atomic-number embedding and its check."""

    def __init__(self, cutoff: float, max_num_elements: int, embedding_dim: int) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.max_num_elements = int(max_num_elements)
        self.embedding = nn.Embedding(max_num_elements, embedding_dim)

    def embed(self, numbers: torch.Tensor) -> torch.Tensor:
        """Atomic numbers [N] -> embeddings [N, D] (ValueError for Z >= max_num_elements)."""
        check_atomic_numbers(numbers, self.max_num_elements)
        return self.embedding(numbers)


class NeighbourAttention(nn.Module):
    """Multi-head attention of each atom over itself and its neighbours.

    Args:
        hidden_channels: token width C (divisible by ``num_heads``).
        num_heads: attention heads H.
        num_radial: radial basis size R.
        logit_cap: soft cap of the attention logits.
    """

    def __init__(
        self, hidden_channels: int, num_heads: int, num_radial: int, logit_cap: float = 20.0
    ) -> None:
        super().__init__()
        if hidden_channels % num_heads:
            raise ValueError(
                f"hidden_channels={hidden_channels} is not divisible by num_heads={num_heads}"
            )
        self.num_heads = num_heads
        self.head_dim = hidden_channels // num_heads
        self.logit_cap = float(logit_cap)
        self.qkv = nn.Linear(hidden_channels, 3 * hidden_channels)
        self.radial = nn.Linear(num_radial, num_heads + hidden_channels)
        self.out = nn.Linear(hidden_channels, hidden_channels)

    def _cap(self, logits: torch.Tensor) -> torch.Tensor:
        return self.logit_cap * torch.tanh(logits / self.logit_cap)

    def forward(self, x: torch.Tensor, graph: EdgeGraph) -> torch.Tensor:
        """Tokens ``x`` [N, C] and the edges -> attention output [N, C]."""
        n, heads, dim = x.shape[0], self.num_heads, self.head_dim
        q, k, v = self.qkv(x).view(n, 3, heads, dim).unbind(dim=1)
        centre, neigh = graph.edge_index
        edge_terms = self.radial(graph.radial)
        bias, filt = edge_terms[:, :heads], edge_terms[:, heads:].view(-1, heads, dim)
        scale = 1.0 / math.sqrt(dim)
        logits = (q.index_select(0, centre) * k.index_select(0, neigh)).sum(-1)
        logits = self._cap(logits * scale + bias)  # [E, H]
        self_logits = self._cap((q * k).sum(-1) * scale)  # [N, H]
        alpha, alpha_self = segment_softmax(logits, centre, n, graph.envelope, self_logits)
        messages = alpha.unsqueeze(-1) * v.index_select(0, neigh) * filt  # [E, H, D]
        out = scatter_sum(messages, centre, n) + alpha_self.unsqueeze(-1) * v
        return self.out(out.reshape(n, heads * dim))


class NeighbourMoments(nn.Module):
    """Invariants of weighted neighbour moments of order 0 to ``order`` (at most 2).

    Per channel: the density ``m0_i = Σ_j w0_ij`` (summed, not averaged as attention is),
    ``m1_i = Σ_j w1_ij r̂_ij`` and ``m2_i = Σ_j w2_ij (r̂_ij r̂_ijᵀ − I/3)``, with
    ``w = (W φ(r_ij)) ⊙ (W' x_j) · u(r_ij) / n_norm``; output ``Linear([m0, |m1|², |m2|²_F])``.
    ``|m1|²`` and ``|m2|²`` are sums over neighbour pairs of ``w_j w_k P_l(cos θ_jk)``
    (three-body terms).

    Args:
        hidden_channels: token width C.
        channels: channels V per order.
        num_radial: radial basis size R.
        order: highest order (0: densities only, no directions needed).
        neighbour_norm: divisor of the sums (about the number of neighbours).
    """

    def __init__(self, hidden_channels: int, channels: int, num_radial: int, order: int = 2,
                 neighbour_norm: float = 32.0) -> None:
        super().__init__()
        if order not in (0, 1, 2):
            raise ValueError(f"moment_order must be 0, 1 or 2, got {order}")
        self.channels, self.order = channels, order
        self.norm = 1.0 / float(neighbour_norm)
        self.radial = nn.Linear(num_radial, (order + 1) * channels)
        self.source = nn.Linear(hidden_channels, (order + 1) * channels)
        self.out = nn.Linear((order + 1) * channels, hidden_channels)

    def forward(self, x: torch.Tensor, graph: EdgeGraph) -> torch.Tensor:
        """Tokens ``x`` [N, C] and the edges -> [N, C]."""
        centre, neigh = graph.edge_index
        w = self.radial(graph.radial) * self.source(x).index_select(0, neigh)
        w = w * (graph.envelope * self.norm).unsqueeze(-1)
        if self.order == 0:
            return self.out(scatter_sum(w, centre, len(x)))
        u = graph.unit
        assert u is not None, "moments of order > 0 need the edge directions"
        w0, w1, *w2 = w.split(self.channels, dim=-1)
        m1 = scatter_sum(u.unsqueeze(-1) * w1.unsqueeze(1), centre, len(x))  # [N, 3, V]
        feats = [scatter_sum(w0, centre, len(x)), (m1 * m1).sum(1)]
        if w2:
            outer = u[:, [0, 1, 2, 0, 0, 1]] * u[:, [0, 1, 2, 1, 2, 2]]  # xx yy zz xy xz yz
            outer = outer - outer.new_tensor([1 / 3, 1 / 3, 1 / 3, 0.0, 0.0, 0.0])
            m2 = scatter_sum(outer.unsqueeze(-1) * w2[0].unsqueeze(1), centre, len(x))
            m2sq = m2 * m2  # [N, 6, V]
            feats.append(m2sq[:, :3].sum(1) + 2.0 * m2sq[:, 3:].sum(1))
        return self.out(torch.cat(feats, dim=-1))


class TransformerLayer(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x))`` [then ``x + Moments(LN(x))``] then ``x + FFN(LN(x))``
    (FFN: C -> F -> C, SiLU; the moment sub-layer only when ``moment_channels`` > 0)."""

    def __init__(self, hidden_channels: int, num_heads: int, ffn_hidden: int, num_radial: int,
                 logit_cap: float = 20.0, moment_channels: int = 0,
                 moment_order: int = 2) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(hidden_channels)
        self.attn = NeighbourAttention(hidden_channels, num_heads, num_radial, logit_cap)
        self.moments = None
        if moment_channels > 0:
            self.norm_moments = nn.LayerNorm(hidden_channels)
            self.moments = NeighbourMoments(hidden_channels, moment_channels, num_radial,
                                            moment_order)
        self.norm_ffn = nn.LayerNorm(hidden_channels)
        self.ffn = mlp([hidden_channels, ffn_hidden, hidden_channels])

    def forward(self, x: torch.Tensor, graph: EdgeGraph) -> torch.Tensor:
        """Tokens ``x`` [N, C] and the edges -> updated tokens [N, C]."""
        x = x + self.attn(self.norm_attn(x), graph)
        if self.moments is not None:
            x = x + self.moments(self.norm_moments(x), graph)
        return x + self.ffn(self.norm_ffn(x))


class TransformerEnergyModel(AtomTokenModel):
    """Invariant transformer energy model: ``data -> {"energies": [N]}`` (eV per atom).

    Args:
        cutoff: neighbour cutoff radius rc (Å).
        num_layers: transformer blocks.
        hidden_channels: token width C.
        num_heads: attention heads (divide ``hidden_channels``).
        ffn_hidden: hidden width of the feed-forward networks.
        num_radial: size of the radial basis of distances.
        max_num_elements: size of the atomic-number embedding (Z < max_num_elements).
        radial_basis: ``"bessel"`` or ``"gaussian"``.
        envelope: ``"polynomial"`` (C2 at rc with ``envelope_exponent`` p) or ``"cosine"``
            (C1; fitted forces faster in benchmarks/FORCES.md).
        envelope_exponent: exponent p of the polynomial envelope.
        logit_cap: soft cap of attention logits (numerical robustness).
        moment_channels: channels of the neighbour-moment sub-layer (0 = none).
        moment_order: its highest order: 0 densities, 1 and 2 also three-body terms.
        species_radial: scale the radial basis by learned per-species-pair factors.
        direction_features: also feed ``φ(r) ⊗ r̂`` in the lab frame (not rotation invariant).

    Needs ``atomic_numbers`` [N], ``edge_index`` [2, E] and ``edge_lengths`` [E] (Å);
    ``edge_vectors`` [E, 3] too with moments of order > 0 or ``direction_features``.
    """

    direct_forces = False

    def __init__(
        self,
        cutoff: float,
        num_layers: int,
        hidden_channels: int,
        num_heads: int,
        ffn_hidden: int,
        num_radial: int = 8,
        max_num_elements: int = 119,
        radial_basis: str = "bessel",
        envelope: str = "polynomial",
        envelope_exponent: int = 6,
        logit_cap: float = 20.0,
        moment_channels: int = 0,
        moment_order: int = 2,
        species_radial: bool = False,
        direction_features: bool = False,
    ) -> None:
        super().__init__(cutoff, max_num_elements, hidden_channels)
        self.radial_basis = build_radial_basis(radial_basis, cutoff, num_radial)
        self.envelope = build_envelope(envelope, cutoff, envelope_exponent)
        self.direction_features = bool(direction_features)
        self.needs_directions = (moment_channels > 0 and moment_order > 0
                                 or self.direction_features)
        edge_width = num_radial * (4 if self.direction_features else 1)
        self.species_radial = None
        if species_radial:
            self.species_radial = nn.Embedding(max_num_elements, 2 * num_radial)
            nn.init.zeros_(self.species_radial.weight)
        self.layers = nn.ModuleList(
            TransformerLayer(hidden_channels, num_heads, ffn_hidden, edge_width, logit_cap,
                             moment_channels, moment_order)
            for _ in range(num_layers)
        )
        self.norm_out = nn.LayerNorm(hidden_channels)
        self.readout = mlp([hidden_channels, hidden_channels, 1])

    def _graph(self, data: dict[str, torch.Tensor], dtype: torch.dtype) -> EdgeGraph:
        edge_index = data[keys.EDGE_INDEX]
        lengths = data[keys.EDGE_LENGTHS]
        radial = self.radial_basis(lengths).to(dtype)
        if self.species_radial is not None:
            numbers = data[keys.ATOMIC_NUMBERS]
            a, _ = self.species_radial(numbers.index_select(0, edge_index[0])).chunk(2, -1)
            _, b = self.species_radial(numbers.index_select(0, edge_index[1])).chunk(2, -1)
            radial = radial * (1.0 + a + b)
        unit = None
        if self.needs_directions:
            unit = (data[keys.EDGE_VECTORS] / lengths.unsqueeze(-1)).to(dtype)
        if self.direction_features:
            radial = torch.cat([radial, (radial.unsqueeze(-1) * unit.unsqueeze(1)).flatten(1)],
                               dim=-1)  # [E, 4R]: φ and φ ⊗ r̂ (x, y, z per basis function)
        return EdgeGraph(edge_index, radial, self.envelope(lengths).to(dtype), unit)

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Data dict -> ``{"energies": [N]}`` (per-atom energies before scale and shift)."""
        x = self.embed(data[keys.ATOMIC_NUMBERS])
        graph = self._graph(data, x.dtype)
        for layer in self.layers:
            x = layer(x, graph)
        energies = self.readout(self.norm_out(x)).squeeze(-1)
        return {keys.ATOMIC_ENERGIES: energies}
