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

Only distances and atomic numbers enter, so the energy is invariant under rotations,
reflections, translations and permutations; forces and stress come from
:class:`~mlip_scaling.models.potential.Potential` as derivatives of the energy.
"""

from __future__ import annotations

import math

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

__all__ = ["TransformerEnergyModel", "NeighbourAttention", "TransformerLayer"]


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

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        radial: torch.Tensor,
        envelope: torch.Tensor,
    ) -> torch.Tensor:
        """Tokens ``x`` [N, C], ``edge_index`` [2, E], ``radial`` [E, R], ``envelope`` [E]
        -> attention output [N, C]."""
        n, heads, dim = x.shape[0], self.num_heads, self.head_dim
        q, k, v = self.qkv(x).view(n, 3, heads, dim).unbind(dim=1)
        centre, neigh = edge_index
        edge_terms = self.radial(radial)
        bias, filt = edge_terms[:, :heads], edge_terms[:, heads:].view(-1, heads, dim)
        scale = 1.0 / math.sqrt(dim)
        logits = (q.index_select(0, centre) * k.index_select(0, neigh)).sum(-1)
        logits = self._cap(logits * scale + bias)  # [E, H]
        self_logits = self._cap((q * k).sum(-1) * scale)  # [N, H]
        alpha, alpha_self = segment_softmax(logits, centre, n, envelope, self_logits)
        messages = alpha.unsqueeze(-1) * v.index_select(0, neigh) * filt  # [E, H, D]
        out = scatter_sum(messages, centre, n) + alpha_self.unsqueeze(-1) * v
        return self.out(out.reshape(n, heads * dim))


class TransformerLayer(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))`` (FFN: C -> F -> C, SiLU)."""

    def __init__(
        self,
        hidden_channels: int,
        num_heads: int,
        ffn_hidden: int,
        num_radial: int,
        logit_cap: float = 20.0,
    ) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(hidden_channels)
        self.attn = NeighbourAttention(hidden_channels, num_heads, num_radial, logit_cap)
        self.norm_ffn = nn.LayerNorm(hidden_channels)
        self.ffn = mlp([hidden_channels, ffn_hidden, hidden_channels])

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        radial: torch.Tensor,
        envelope: torch.Tensor,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x), edge_index, radial, envelope)
        return x + self.ffn(self.norm_ffn(x))


class TransformerEnergyModel(nn.Module):
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
        envelope: ``"polynomial"`` (C2 at rc with ``envelope_exponent`` p) or ``"cosine"``.
        envelope_exponent: exponent p of the polynomial envelope.
        logit_cap: soft cap of attention logits (numerical robustness).

    Needs ``atomic_numbers`` [N], ``edge_index`` [2, E] and ``edge_lengths`` [E] (Å).
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
    ) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.max_num_elements = int(max_num_elements)
        self.embedding = nn.Embedding(max_num_elements, hidden_channels)
        self.radial_basis = build_radial_basis(radial_basis, cutoff, num_radial)
        self.envelope = build_envelope(envelope, cutoff, envelope_exponent)
        self.layers = nn.ModuleList(
            TransformerLayer(hidden_channels, num_heads, ffn_hidden, num_radial, logit_cap)
            for _ in range(num_layers)
        )
        self.norm_out = nn.LayerNorm(hidden_channels)
        self.readout = mlp([hidden_channels, hidden_channels, 1])

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        numbers = data[keys.ATOMIC_NUMBERS]
        check_atomic_numbers(numbers, self.max_num_elements)
        edge_index = data[keys.EDGE_INDEX]
        lengths = data[keys.EDGE_LENGTHS]
        x = self.embedding(numbers)
        radial = self.radial_basis(lengths).to(x.dtype)
        envelope = self.envelope(lengths).to(x.dtype)
        for layer in self.layers:
            x = layer(x, edge_index, radial, envelope)
        energies = self.readout(self.norm_out(x)).squeeze(-1)
        return {keys.ATOMIC_ENERGIES: energies}
