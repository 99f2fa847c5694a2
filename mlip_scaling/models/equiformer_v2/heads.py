"""Output heads: invariant energy, direct (non-conservative) forces and rank-2 stress."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn

from mlip_scaling.models.equiformer_v2.attention import EdgeContext, feed_forward, graph_attention
from mlip_scaling.models.equiformer_v2.config import STRESS_HEADS, EquiformerV2Config
from mlip_scaling.models.equiformer_v2.constants import ExactConstants
from mlip_scaling.models.equiformer_v2.layer_norm import make_norm

__all__ = [
    "STRESS_HEADS",
    "DirectForceHead",
    "EnergyHead",
    "FairchemRank2StressHead",
    "Rank2StressHead",
    "make_stress_head",
]



class EnergyHead(nn.Module):
    """Per-atom energies [N] = ``l = 0`` output of a feed-forward network / avg_num_nodes."""

    def __init__(self, cfg: EquiformerV2Config) -> None:
        super().__init__()
        self.avg_num_nodes = cfg.avg_num_nodes
        self.energy_block = feed_forward(cfg, output_channels=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy_block(x)[:, 0, 0] / self.avg_num_nodes


class DirectForceHead(nn.Module):
    """Forces [N, 3] (eV/Å) = ``l = 1`` output of one more graph attention layer."""

    def __init__(self, cfg: EquiformerV2Config) -> None:
        super().__init__()
        self.force_block = graph_attention(cfg, output_channels=1)

    def forward(self, x: torch.Tensor, edges: EdgeContext) -> torch.Tensor:
        # e3nn's l = 1 basis is (x, y, z)
        return self.force_block(x, edges)[:, 1:4, 0]


def _rank2_basis() -> torch.Tensor:
    """[5, 3, 3] symmetric traceless unit tensors of the l = 2 irrep (e3nn basis)."""
    with torch.device("cpu"):
        return o3.wigner_3j(1, 1, 2, dtype=torch.float64).permute(2, 0, 1) * math.sqrt(5.0)


class _Rank2Layers(ExactConstants):
    """The layers both rank-2 stress heads hold (same names and shapes as fairchem's):
    a norm of the edge harmonics, a LayerNorm of edge features, a scalar and an ``l = 2``
    MLP, and the head's constant ``basis`` of stress tensors."""

    def __init__(self, cfg: EquiformerV2Config, basis: torch.Tensor) -> None:
        super().__init__()
        lmax, emb = cfg.lmax, 2 * cfg.sphere_channels
        self.lmax = lmax
        self.sphharm_norm = make_norm(cfg.norm_type, lmax, 1)
        self.xedge_layer_norm = nn.LayerNorm(emb)
        self.scalar_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, 1))
        self.irrep2_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, 1))
        self.register_constant("basis", basis)

    def node_means(
        self, x: torch.Tensor, edges: EdgeContext, centre_first: bool, sh2_normalization: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Envelope-weighted means over each atom's edges of the edge features and of their
        products with the ``l = 2`` harmonics: ([N, 2C], [N, 5, 2C]).

        Edge features: ``[x_a, x_b]`` (``a`` the centre when ``centre_first``, else the
        neighbour) contracted with the normed harmonics of the edge vector, layer-normed.
        ``sh2_normalization``: e3nn's normalisation of the ``l = 2`` harmonics.
        """
        centre, neighbour = edges.index
        first, second = (centre, neighbour) if centre_first else (neighbour, centre)
        sh = o3.spherical_harmonics(list(range(self.lmax + 1)), edges.vectors, False)
        sh = self.sphharm_norm(sh[:, :, None])[:, :, 0]
        x_edge = torch.cat([x[first], x[second]], dim=2)
        x_edge = self.xedge_layer_norm(torch.einsum("ekc,ek->ec", x_edge, sh))
        sh2 = o3.spherical_harmonics(2, edges.vectors, True, normalization=sh2_normalization)
        w = edges.envelope
        node_w = w.new_zeros(x.shape[0]).index_add(0, centre, w).clamp_min(1e-12)
        scal = x.new_zeros(x.shape[0], x_edge.shape[1]).index_add(0, centre, x_edge * w[:, None])
        irr = sh2[:, :, None] * x_edge[:, None, :] * w[:, None, None]
        irr = x.new_zeros(x.shape[0], 5, x_edge.shape[1]).index_add(0, centre, irr)
        return scal / node_w[:, None], irr / node_w[:, None, None]

    def forward(
        self, x: torch.Tensor, edges: EdgeContext, batch: torch.Tensor, num_structures: int
    ) -> torch.Tensor:
        """Stress [B, 3, 3] (eV/Å^3) from node embeddings ``x`` [N, (lmax+1)^2, C]; each
        head defines ``parts`` (isotropic [B], anisotropic [B, 5]) and ``to_tensor``."""
        return self.to_tensor(*self.parts(x, edges, batch, num_structures))


def _structure_means(
    scal: torch.Tensor, irr: torch.Tensor, batch: torch.Tensor, num_structures: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Means per structure of per-atom ``scal`` [N] and ``irr`` [N, 5]: ([B], [B, 5])."""
    count = scal.new_zeros(num_structures).index_add(0, batch, torch.ones_like(scal))
    count = count.clamp_min(1.0)
    iso = scal.new_zeros(num_structures).index_add(0, batch, scal) / count
    aniso = irr.new_zeros(num_structures, 5).index_add(0, batch, irr) / count[:, None]
    return iso, aniso


class Rank2StressHead(_Rank2Layers):
    """Stress [B, 3, 3] = isotropic part + symmetric traceless (l = 2) part.

    Edge features contract the concatenated node embeddings of both atoms with the
    (normed) spherical harmonics of the edge vector; per atom an envelope-weighted mean
    over edges, then an MLP gives a scalar and an equivariant MLP an ``l = 2`` vector;
    averaged per structure. (fairchem applies a plain MLP with biases to the ``l = 2``
    components, which is not equivariant; the parameters here are the same.)
    """

    def __init__(self, cfg: EquiformerV2Config) -> None:
        super().__init__(cfg, _rank2_basis())

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

    def parts(
        self, x: torch.Tensor, edges: EdgeContext, batch: torch.Tensor, num_structures: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(isotropic [B], l = 2 components [B, 5]) of the stress (eV/Å^3)."""
        scal, irr = self.node_means(x, edges, centre_first=True, sh2_normalization="component")
        scal, irr = self.scalar_mlp(scal)[:, 0], self._irrep2(irr)
        return _structure_means(scal, irr, batch, num_structures)

    def to_tensor(self, iso: torch.Tensor, aniso: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(3, dtype=iso.dtype, device=iso.device)
        return iso[:, None, None] * eye + torch.einsum("bk,kij->bij", aniso, self.basis)


def _fairchem_rank2_basis() -> torch.Tensor:
    """[6, 3, 3] fairchem's change of basis: ``I/sqrt(3)``, then the five symmetric
    traceless unit tensors in e3nn's ``l = 2`` order (xz, xy, 2y²-x²-z², yz, z²-x²)."""
    b = torch.zeros(6, 3, 3, dtype=torch.float64, device="cpu")
    b[0] = torch.eye(3, dtype=torch.float64, device="cpu") / math.sqrt(3.0)
    h, s6 = 1.0 / math.sqrt(2.0), 1.0 / math.sqrt(6.0)
    b[1, 0, 2] = b[1, 2, 0] = h
    b[2, 0, 1] = b[2, 1, 0] = h
    b[3] = torch.diag(torch.tensor([-s6, 2 * s6, -s6], dtype=torch.float64, device="cpu"))
    b[4, 1, 2] = b[4, 2, 1] = h
    b[5, 0, 0], b[5, 2, 2] = -h, h
    return b


class FairchemRank2StressHead(_Rank2Layers):
    """fairchem 1.10's rank-2 stress head (``decompose``, node-level MLPs), as published.

    Edge features contract ``[x_neighbour, x_centre]`` with the normed spherical
    harmonics of the edge vector; per centre atom the mean over its edges of these
    features (scalar part) and of their products with the ``l = 2`` harmonics
    ("integral" normalisation, [5]); plain MLPs (with biases, not equivariant on the
    ``l = 2`` part) give a scalar and 5 components; means per structure. Output:
    stress [B, 3, 3] = ``iso · I/sqrt(3) + Σ_k aniso_k B_k`` (:func:`_fairchem_rank2_basis`).
    """

    def __init__(self, cfg: EquiformerV2Config) -> None:
        super().__init__(cfg, _fairchem_rank2_basis())
        norms = cfg.output_normalizers or {}
        iso, aniso = norms.get("stress_isotropic", [1.0]), norms.get("stress_anisotropic", [1.0])
        self.iso_rmsd, self.iso_mean = float(iso[0]), float(iso[1]) if len(iso) > 1 else 0.0
        self.aniso_rmsd = float(aniso[0])
        means = [float(m) for m in aniso[1:]] or [0.0]
        if len(means) not in (1, 5):
            raise ValueError("stress_anisotropic normaliser needs 1 or 5 means")
        self.aniso_mean = means

    def parts(
        self, x: torch.Tensor, edges: EdgeContext, batch: torch.Tensor, num_structures: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(isotropic [B], anisotropic [B, 5]) in fairchem's basis (eV/Å^3)."""
        scal, irr = self.node_means(x, edges, centre_first=False, sh2_normalization="integral")
        scal, irr = self.scalar_mlp(scal)[:, 0], self.irrep2_mlp(irr)[:, :, 0]
        iso, aniso = _structure_means(scal, irr, batch, num_structures)
        aniso_mean = torch.tensor(self.aniso_mean, dtype=aniso.dtype, device=aniso.device)
        return iso * self.iso_rmsd + self.iso_mean, aniso * self.aniso_rmsd + aniso_mean

    def to_tensor(self, iso: torch.Tensor, aniso: torch.Tensor) -> torch.Tensor:
        coeff = torch.cat([iso[:, None], aniso], dim=1)
        return torch.einsum("bk,kij->bij", coeff, self.basis)


def make_stress_head(cfg: EquiformerV2Config) -> nn.Module:
    """The stress head named by ``cfg.stress_head`` (one of :data:`STRESS_HEADS`)."""
    if cfg.stress_head == "fairchem":
        return FairchemRank2StressHead(cfg)
    return Rank2StressHead(cfg)
