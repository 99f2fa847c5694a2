"""Output heads: invariant energy, direct (non-conservative) forces and rank-2 stress."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn

from mlip_scaling.models.equiformer_v2.attention import (
    EdgeContext,
    FeedForwardNetwork,
    GraphAttention,
)
from mlip_scaling.models.equiformer_v2.layer_norm import EquivariantRMSNorm

__all__ = ["DirectForceHead", "EnergyHead", "Rank2StressHead"]


class EnergyHead(nn.Module):
    """Per-atom energies [N] = ``l = 0`` output of a feed-forward network / avg_num_nodes."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.avg_num_nodes = cfg["avg_num_nodes"]
        self.energy_block = FeedForwardNetwork(
            cfg["sphere_channels"],
            cfg["ffn_hidden_channels"],
            1,
            cfg["lmax"],
            cfg["grid_resolution"],
            cfg["use_grid_mlp"],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy_block(x)[:, 0, 0] / self.avg_num_nodes


class DirectForceHead(nn.Module):
    """Forces [N, 3] (eV/Å) = ``l = 1`` output of one more graph attention layer."""

    def __init__(self, cfg: dict, edge_channels: list[int]) -> None:
        super().__init__()
        self.force_block = GraphAttention(
            cfg["sphere_channels"],
            cfg["attn_hidden_channels"],
            cfg["num_heads"],
            cfg["attn_alpha_channels"],
            cfg["attn_value_channels"],
            1,
            cfg["lmax"],
            cfg["mmax"],
            cfg["grid_resolution"],
            cfg["max_num_elements"],
            edge_channels,
        )

    def forward(self, x: torch.Tensor, edges: EdgeContext) -> torch.Tensor:
        # e3nn's l = 1 basis is (x, y, z)
        return self.force_block(x, edges)[:, 1:4, 0]


def _rank2_basis() -> torch.Tensor:
    """[5, 3, 3] symmetric traceless unit tensors of the l = 2 irrep (e3nn basis)."""
    with torch.device("cpu"):
        return o3.wigner_3j(1, 1, 2, dtype=torch.float64).permute(2, 0, 1) * math.sqrt(5.0)


class Rank2StressHead(nn.Module):
    """Stress [B, 3, 3] = isotropic part + symmetric traceless (l = 2) part.

    Edge features contract the concatenated node embeddings of both atoms with the
    (normed) spherical harmonics of the edge vector; per atom an envelope-weighted mean
    over edges, then an MLP gives a scalar and an equivariant MLP an ``l = 2`` vector;
    averaged per structure. (fairchem applies a plain MLP with biases to the ``l = 2``
    components, which is not equivariant; the parameters here are the same.)
    """

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        lmax, emb = cfg["lmax"], 2 * cfg["sphere_channels"]
        self.lmax = lmax
        self.sphharm_norm = EquivariantRMSNorm(lmax, 1)
        self.xedge_layer_norm = nn.LayerNorm(emb)
        self.scalar_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, 1))
        self.irrep2_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, 1))
        basis = _rank2_basis().to(torch.get_default_dtype()).to(torch.get_default_device())
        self.register_buffer("basis", basis)

    def _irrep2(self, irr: torch.Tensor) -> torch.Tensor:
        """Equivariant MLP of l = 2 features [N, 5, C] -> [N, 5].

        Same parameters as a 2-layer MLP, used so that rotations commute with it: the
        first linear without bias, a gate ``sigmoid(|h| + b1)`` per channel, the second
        linear without bias plus ``b2`` times the channel mean (a learned skip).
        """
        first, last = self.irrep2_mlp[0], self.irrep2_mlp[2]
        h = torch.nn.functional.linear(irr, first.weight)
        norm = torch.sqrt(h.pow(2).sum(dim=1, keepdim=True) + 1e-12)
        h = h * torch.sigmoid(norm + first.bias)
        return torch.nn.functional.linear(h, last.weight)[:, :, 0] + last.bias * irr.mean(dim=2)

    def forward(
        self,
        x: torch.Tensor,
        edges: EdgeContext,
        vectors: torch.Tensor,
        batch: torch.Tensor,
        num_structures: int,
    ) -> torch.Tensor:
        centre, neighbour = edges.index
        sh = o3.spherical_harmonics(list(range(self.lmax + 1)), vectors, False)
        sh = self.sphharm_norm(sh[:, :, None])[:, :, 0]
        x_edge = torch.cat([x[centre], x[neighbour]], dim=2)
        x_edge = self.xedge_layer_norm(torch.einsum("ekc,ek->ec", x_edge, sh))
        sh2 = o3.spherical_harmonics(2, vectors, True, normalization="component")
        w = edges.envelope
        node_w = w.new_zeros(len(x)).index_add(0, centre, w).clamp_min(1e-12)
        scal = x.new_zeros(len(x), x_edge.shape[1]).index_add(0, centre, x_edge * w[:, None])
        irr = sh2[:, :, None] * x_edge[:, None, :] * w[:, None, None]
        irr = x.new_zeros(len(x), 5, x_edge.shape[1]).index_add(0, centre, irr)
        scal = self.scalar_mlp(scal / node_w[:, None])[:, 0]
        irr = self._irrep2(irr / node_w[:, None, None])
        count = x.new_zeros(num_structures).index_add(0, batch, torch.ones_like(scal))
        count = count.clamp_min(1.0)
        iso = x.new_zeros(num_structures).index_add(0, batch, scal) / count
        aniso = x.new_zeros(num_structures, 5).index_add(0, batch, irr) / count[:, None]
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        return iso[:, None, None] * eye + torch.einsum("bk,kij->bij", aniso, self.basis)
