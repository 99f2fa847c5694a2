"""GemNet-OC-style directional message passing (after Gasteiger et al., TMLR 2022).

Atoms carry embeddings ``h_i`` [N, A], directed edges ``e = (i, j)`` embeddings ``m_e``
[E, C]. Every interaction block updates them with

* **edge-to-edge, two hops (triplets)**: ``m_ij += Σ_k x_ik ⊙ W_r φ(r_ik) ⊙ W_c P(cos θ_kij)``
  over the other edges ``(i, k)`` of the centre (``P`` Legendre polynomials: the m = 0
  spherical basis);
* **edge-to-edge, three hops (quadruplets)** ``k - i - j - l``: the sum over ``k`` and ``l``
  of ``x_ik x'_jl B(θ_kij, θ_ijl, φ)`` with the separable basis ``P_a(cos θ_kij)
  P_b(cos θ_ijl)`` and the dihedral term ``sin θ_kij sin θ_ijl cos φ`` (a dot product of the
  components of ``r̂_ik`` and ``r̂_jl`` normal to ``r̂_ij``), evaluated as products of two
  triplet sums (the second on the reverse edge ``(j, i)``): exact for this basis and
  linear in the triplets, with no quadruplet list;
* **atom-to-edge** (``m_ij`` from ``[h_i, h_j, m_ij]``), **edge-to-atom** (``h_i += MLP(Σ_j
  m_ij ⊙ W φ(r_ij))``) and **atom-to-atom** (``h_i += Σ_j W' φ(r_ij) ⊙ V h_j``) blocks.

The radial basis ``φ`` (Gaussians) carries the smooth polynomial envelope, so every
contribution of a pair vanishes with two derivatives at the cutoff. The energy is the sum
of per-block atom heads. ``direct_forces=True`` adds GemNet-OC's direct force head
(``F_i = Σ_j f_ij r̂_ij``, ``f`` from the edge embeddings) and a stress from the same edge
terms (``σ = -(1/V) Σ_ij f_ij r̂_ij ⊗ r_ij``, symmetrised); otherwise forces and stress are
derivatives of the energy taken by :class:`~mlip_scaling.models.potential.Potential`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlip_scaling import keys
from mlip_scaling.models.blocks import (
    GaussianSmearing,
    PolynomialCutoff,
    check_atomic_numbers,
    mlp,
    scatter_sum,
)
from mlip_scaling.models.gemnet_oc.graph import build_triplets, legendre, reverse_edges

__all__ = ["EdgeGeometry", "GemNetOC", "InteractionBlock", "quadruplet_sums"]


class EdgeGeometry:
    """Per-forward edge and triplet quantities shared by all blocks.

    ``quad_envelope`` [E] (None: quadruplets over all edges) restricts the quadruplet
    triplets to edges where it is non-zero and weights them by it.
    """

    def __init__(self, data: dict[str, torch.Tensor], rbf: torch.Tensor, num_atoms: int,
                 num_spherical: int, num_quad_spherical: int,
                 quad_envelope: torch.Tensor | None = None) -> None:
        self.edge_index = data[keys.EDGE_INDEX]
        self.num_atoms = num_atoms
        self.unit = data[keys.EDGE_VECTORS] / data[keys.EDGE_LENGTHS].unsqueeze(-1)
        self.rbf = rbf
        self.t_out, self.t_in = build_triplets(self.edge_index[0], num_atoms)
        self.reverse = reverse_edges(self.edge_index, data[keys.EDGE_CELL_SHIFT], num_atoms)
        cos = (self.unit[self.t_out] * self.unit[self.t_in]).sum(-1)
        self.cbf = legendre(cos, num_spherical)
        self.quad_envelope = quad_envelope
        self.q_out, self.q_in = self.t_out, self.t_in
        if quad_envelope is not None:
            inside = quad_envelope > 0
            keep = torch.nonzero(inside[self.t_out] & inside[self.t_in]).squeeze(1)
            self.q_out, self.q_in, cos = self.t_out[keep], self.t_in[keep], cos[keep]
        self.qbf = legendre(cos, num_quad_spherical)
        # component of r̂_ik normal to r̂_ij (norm sin θ_kij; smooth, no division)
        self.normal = self.unit[self.q_in] - cos.unsqueeze(-1) * self.unit[self.q_out]

    def triplet_sum(self, values: torch.Tensor, quad: bool = False) -> torch.Tensor:
        """Per-triplet values [T, ...] (of the quadruplet triplets with ``quad``) -> sums
        over each edge's triplets [E, ...]."""
        return scatter_sum(values, self.q_out if quad else self.t_out, self.rbf.shape[0])


def quadruplet_sums(x_in: torch.Tensor, x_out: torch.Tensor, g: EdgeGeometry) -> torch.Tensor:
    """``Σ_{k,l} x_in[ik] x_out[jl] B(θ_kij, θ_ijl, φ)`` for every edge ``(i, j)``.

    ``x_in``, ``x_out`` [E, C] per-edge weights; ``k`` runs over the other edges of ``i``,
    ``l`` over the other edges of ``j`` (the reverse edge excluded). The basis ``B`` is
    ``P_a(cos θ_kij) P_b(cos θ_ijl)`` (``a, b < L``) and ``sin θ_kij sin θ_ijl cos φ``
    (φ the dihedral angle) -> [E, C, L·L + 1]. With a quadruplet cutoff every edge of
    the quadruplet (central, in and out) is weighted by its envelope.
    """
    width = x_in.shape[1]
    x = torch.cat([x_in, x_out], dim=1)
    if g.quad_envelope is not None:  # in-edges enter and leave smoothly
        x = x * g.quad_envelope.unsqueeze(-1)
    basis = torch.cat([g.qbf, g.normal], dim=1)  # [T, L + 3]
    sums = g.triplet_sum(x[g.q_in].unsqueeze(-1) * basis.unsqueeze(1), quad=True)
    num = g.qbf.shape[1]
    s_in, v_in = sums[:, :width, :num], sums[:, :width, num:]
    s_out, v_out = sums[g.reverse, width:, :num], sums[g.reverse, width:, num:]
    product = (s_in.unsqueeze(-1) * s_out.unsqueeze(-2)).flatten(2)
    dihedral = (v_in * v_out).sum(-1, keepdim=True)
    out = torch.cat([product, dihedral], dim=-1)
    if g.quad_envelope is not None:  # so does the central edge
        out = out * g.quad_envelope[:, None, None]
    return out


class InteractionBlock(nn.Module):
    """One GemNet-OC-style block: triplet, quadruplet, atom/edge updates (see module notes)."""

    def __init__(self, atom: int, edge: int, triplet: int, quad: int, num_radial: int,
                 num_spherical: int, num_quad_spherical: int, quadruplets: bool,
                 avg_degree: float) -> None:
        super().__init__()
        self.norm = 1.0 / math.sqrt(avg_degree)
        self.trip_down = nn.Linear(edge, triplet, bias=False)
        self.trip_rbf = nn.Linear(num_radial, triplet, bias=False)
        self.trip_cbf = nn.Linear(num_spherical, triplet, bias=False)
        self.trip_up = nn.Linear(triplet, edge, bias=False)
        self.quad = None
        if quadruplets:
            self.quad = nn.ModuleDict({
                "down_in": nn.Linear(edge, quad, bias=False),
                "down_out": nn.Linear(edge, quad, bias=False),
                "rbf": nn.Linear(num_radial, quad, bias=False),
                "up": nn.Linear(quad * (num_quad_spherical**2 + 1), edge, bias=False),
            })
        self.edge_mlp = mlp([edge, edge, edge])
        self.concat = nn.Linear(2 * atom + edge, edge)
        self.e2a_rbf = nn.Linear(num_radial, edge, bias=False)
        self.atom_mlp = mlp([edge, atom, atom])
        self.a2a_rbf = nn.Linear(num_radial, atom, bias=False)
        self.a2a = nn.Linear(atom, atom, bias=False)
        self.act = nn.SiLU()

    def _triplets(self, m: torch.Tensor, g: EdgeGeometry) -> torch.Tensor:
        x = self.act(self.trip_down(m)) * self.trip_rbf(g.rbf)  # [E, Ct]
        y = g.triplet_sum(x[g.t_in] * self.trip_cbf(g.cbf))
        return self.act(self.trip_up(y * self.norm))

    def _quadruplets(self, m: torch.Tensor, g: EdgeGeometry) -> torch.Tensor:
        q = self.quad
        weight = q["rbf"](g.rbf) * self.norm
        x_in = self.act(q["down_in"](m)) * weight
        x_out = self.act(q["down_out"](m)) * weight
        return self.act(q["up"](quadruplet_sums(x_in, x_out, g).flatten(1)))

    def forward(self, h: torch.Tensor, m: torch.Tensor,
                g: EdgeGeometry) -> tuple[torch.Tensor, torch.Tensor]:
        """Atom [N, A] and edge [E, C] embeddings -> updated ones."""
        update = self._triplets(m, g)
        if self.quad is not None:
            update = update + self._quadruplets(m, g)
        m = m + self.edge_mlp(update)
        centre, neighbour = g.edge_index
        messages = scatter_sum(m * self.e2a_rbf(g.rbf), centre, g.num_atoms) * self.norm
        pairs = scatter_sum(self.a2a_rbf(g.rbf) * self.a2a(h)[neighbour], centre, g.num_atoms)
        h = h + self.atom_mlp(messages) + pairs * self.norm
        m = m + self.act(self.concat(torch.cat([h[centre], h[neighbour], m], dim=-1)))
        return h, m


class GemNetOC(nn.Module):
    """GemNet-OC-style energy model: ``data -> {"energies": [N]}`` (and direct forces).

    Args:
        cutoff: rc (Å).
        num_blocks: interaction blocks.
        atom_channels, edge_channels: embedding widths of atoms and edges.
        triplet_channels, quad_channels: widths of the two- and three-hop interactions.
        num_radial: Gaussian radial basis size.
        num_spherical: Legendre degrees of the triplet basis.
        num_quad_spherical: Legendre degrees per angle of the quadruplet basis.
        quadruplets: include the three-hop interaction.
        direct_forces: predict forces and stress with edge heads (non-conservative).
        max_num_elements: size of the atomic-number embedding.
        avg_degree: typical neighbour count; sums over neighbours are divided by its root.
        envelope_exponent: exponent p of the polynomial envelope.
        quad_cutoff: shorter cutoff (Å) of every edge in a quadruplet (GemNet-OC's
            ``cutoff_qint``; None: ``cutoff``), each weighted by its own envelope.

    Needs ``atomic_numbers``, ``edge_index``, ``edge_cell_shift``, ``edge_vectors``,
    ``edge_lengths`` (and ``cell``, ``pbc``, ``batch`` with direct forces).
    """

    def __init__(self, cutoff: float, num_blocks: int, atom_channels: int, edge_channels: int,
                 triplet_channels: int, quad_channels: int, num_radial: int = 16,
                 num_spherical: int = 7, num_quad_spherical: int = 3, quadruplets: bool = True,
                 direct_forces: bool = False, max_num_elements: int = 119,
                 avg_degree: float = 20.0, envelope_exponent: int = 6,
                 quad_cutoff: float | None = None) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.direct_forces = bool(direct_forces)
        self.max_num_elements = int(max_num_elements)
        self.num_spherical, self.num_quad_spherical = num_spherical, num_quad_spherical
        self.radial = GaussianSmearing(0.0, cutoff, num_radial)
        self.envelope = PolynomialCutoff(cutoff, envelope_exponent)
        self.quad_envelope = None
        if quadruplets and quad_cutoff is not None and quad_cutoff < cutoff:
            self.quad_envelope = PolynomialCutoff(quad_cutoff, envelope_exponent)
        self.embedding = nn.Embedding(max_num_elements, atom_channels)
        self.edge_embedding = mlp([2 * atom_channels + num_radial, edge_channels])
        self.blocks = nn.ModuleList(
            InteractionBlock(atom_channels, edge_channels, triplet_channels, quad_channels,
                             num_radial, num_spherical, num_quad_spherical, quadruplets,
                             avg_degree) for _ in range(num_blocks))
        self.energy_heads = nn.ModuleList(
            mlp([atom_channels, atom_channels, 1]) for _ in range(num_blocks + 1))
        self.force_heads = None
        if self.direct_forces:
            self.force_heads = nn.ModuleList(
                mlp([edge_channels, edge_channels, 1]) for _ in range(num_blocks + 1))

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Data dict -> ``{"energies": [N]}`` (+ ``forces`` [N, 3], ``stress`` [B, 3, 3])."""
        numbers = data[keys.ATOMIC_NUMBERS]
        check_atomic_numbers(numbers, self.max_num_elements)
        lengths = data[keys.EDGE_LENGTHS]
        rbf = self.radial(lengths) * self.envelope(lengths).unsqueeze(-1)
        quad = None if self.quad_envelope is None else self.quad_envelope(lengths)
        g = EdgeGeometry(data, rbf, numbers.shape[0], self.num_spherical,
                         self.num_quad_spherical, quad)
        h = self.embedding(numbers)
        centre, neighbour = g.edge_index
        m = self.edge_embedding(torch.cat([h[centre], h[neighbour], rbf], dim=-1))
        energies = self.energy_heads[0](h).squeeze(-1)
        edge_force = self._edge_force(0, m, lengths)
        for k, block in enumerate(self.blocks, start=1):
            h, m = block(h, m, g)
            energies = energies + self.energy_heads[k](h).squeeze(-1)
            if edge_force is not None:
                edge_force = edge_force + self._edge_force(k, m, lengths)
        out = {keys.ATOMIC_ENERGIES: energies}
        if edge_force is not None:
            out.update(self._direct(edge_force, g, data))
        return out

    def _edge_force(self, k: int, m: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
        if self.force_heads is None:
            return None
        return self.force_heads[k](m).squeeze(-1) * self.envelope(lengths)

    @staticmethod
    def _direct(f: torch.Tensor, g: EdgeGeometry, data: dict[str, torch.Tensor]) -> dict:
        """Edge magnitudes ``f`` [E] -> forces [N, 3] and pair-virial stress [B, 3, 3]."""
        centre = g.edge_index[0]
        forces = scatter_sum(f.unsqueeze(-1) * g.unit, centre, g.num_atoms)
        cell, batch = data[keys.CELL], data[keys.BATCH]
        virial = -(f[:, None, None] * g.unit[:, :, None] * data[keys.EDGE_VECTORS][:, None, :])
        virial = scatter_sum(virial, batch[centre], cell.shape[0])
        volume = torch.linalg.det(cell).abs()
        periodic = data[keys.PBC].all(dim=1) & (volume > 1e-12)
        inv = torch.where(periodic, 1.0 / volume.clamp_min(1e-12), torch.zeros_like(volume))
        stress = 0.5 * (virial + virial.transpose(1, 2)) * inv[:, None, None]
        return {keys.FORCES: forces, keys.STRESS: stress}
