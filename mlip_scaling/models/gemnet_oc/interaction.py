"""Interaction blocks of the GemNet-OC family (fairchem's ``gemnet_oc`` function, its
module names). Shapes: atoms ``h`` [N, A], main edges ``m`` [E, C]; ``Context`` carries the
graphs, interaction indices and projected bases of one forward pass."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mlip_scaling.models.blocks import scatter_sum
from mlip_scaling.models.gemnet_oc.graph import Edges
from mlip_scaling.models.gemnet_oc.layers import (
    INV_SQRT_2,
    AtomUpdateBlock,
    Bilinear,
    Dense,
    ResidualLayer,
    ScaleFactor,
)

__all__ = [
    "Context",
    "EdgeEmbedding",
    "InteractionBlock",
    "PairInteraction",
    "QuadrupletInteraction",
    "TripletInteraction",
]


@dataclass
class Context:
    """Graphs, indices and bases of one forward pass (see ``model.GemNetOC``).

    ``bases`` maps ``"e2e"``, ``"a2e"``, ``"e2a"``, ``"qint"`` to dicts with ``rad`` (edge
    radial projection), ``rad_w`` (per-output-edge angular weights [E, C, S]), ``sph``
    (per-triplet angular basis) and for quadruplets ``cir`` (per in-triplet [T, C]).
    """

    num_atoms: int
    main: Edges
    swap: torch.Tensor
    trip: dict[str, tuple[torch.Tensor, torch.Tensor]]
    bases: dict[str, dict[str, torch.Tensor]]
    rbf_h: torch.Tensor
    aeint: Edges | None = None
    aint: Edges | None = None
    quad: dict[str, torch.Tensor] = field(default_factory=dict)
    a2a_rad: torch.Tensor | None = None


class EdgeEmbedding(nn.Module):
    """``Dense([h_j, h_i, m_ij])`` over edges (``j`` the neighbour, ``i`` the centre)."""

    def __init__(self, atom_features: int, edge_features: int, out_features: int) -> None:
        super().__init__()
        self.dense = Dense(2 * atom_features + edge_features, out_features)

    def forward(self, h: torch.Tensor, m: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.dense(torch.cat([h[index[1]], h[index[0]], m], dim=-1))


def _symmetric(x: torch.Tensor, up_ca: Dense, up_ac: Dense, swap: torch.Tensor) -> torch.Tensor:
    return (up_ca(x) + up_ac(x)[swap]) * INV_SQRT_2


class TripletInteraction(nn.Module):
    """Two-hop message passing: edge (or atom) features of the in-edges, weighted by the
    radial basis, summed with the circular basis of each triplet into the out-edges (or,
    for edge-to-atom, further into the centre atoms)."""

    def __init__(
        self,
        emb_size_in: int,
        emb_size_out: int,
        emb_size_trip_in: int,
        emb_size_trip_out: int,
        emb_size_rbf: int,
        emb_size_cbf: int,
        symmetric_mp: bool = True,
    ) -> None:
        super().__init__()
        self.dense_ba = Dense(emb_size_in, emb_size_in)
        self.mlp_rbf = Dense(emb_size_rbf, emb_size_in, activation=False)
        self.scale_rbf = ScaleFactor()
        self.mlp_cbf = Bilinear(emb_size_trip_in, emb_size_cbf, emb_size_trip_out)
        self.scale_cbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_size_in, emb_size_trip_in)
        self.up_projection_ca = Dense(emb_size_trip_out, emb_size_out)
        self.symmetric_mp = symmetric_mp
        if symmetric_mp:
            self.up_projection_ac = Dense(emb_size_trip_out, emb_size_out)

    def forward(
        self,
        x: torch.Tensor,
        bases: dict[str, torch.Tensor],
        trip: tuple[torch.Tensor, torch.Tensor],
        swap: torch.Tensor | None,
        expand: torch.Tensor | None = None,
        agg: torch.Tensor | None = None,
        agg_size: int = 0,
    ) -> torch.Tensor:
        x = self.dense_ba(x)
        if expand is not None:
            x = x[expand]
        x = self.down_projection(self.scale_rbf(x * self.mlp_rbf(bases["rad"])))
        out, inp = trip
        x = self.mlp_cbf(bases["rad_w"], bases["sph"], x[inp], out, agg, agg_size)
        x = self.scale_cbf_sum(x)
        if self.symmetric_mp:
            return _symmetric(x, self.up_projection_ca, self.up_projection_ac, swap)
        return self.up_projection_ca(x)


class QuadrupletInteraction(nn.Module):
    """Three-hop message passing ``d -> b -> a <- c`` with the circular basis of the
    in-triplet and the two-angle basis (angle ``c-a-b`` and dihedral) of the quadruplet."""

    def __init__(
        self,
        emb_size_edge: int,
        emb_size_quad_in: int,
        emb_size_quad_out: int,
        emb_size_rbf: int,
        emb_size_cbf: int,
        emb_size_sbf: int,
    ) -> None:
        super().__init__()
        self.dense_db = Dense(emb_size_edge, emb_size_edge)
        self.mlp_rbf = Dense(emb_size_rbf, emb_size_edge, activation=False)
        self.scale_rbf = ScaleFactor()
        self.mlp_cbf = Dense(emb_size_cbf, emb_size_quad_in, activation=False)
        self.scale_cbf = ScaleFactor()
        self.mlp_sbf = Bilinear(emb_size_quad_in, emb_size_sbf, emb_size_quad_out)
        self.scale_sbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_size_edge, emb_size_quad_in)
        self.up_projection_ca = Dense(emb_size_quad_out, emb_size_edge)
        self.up_projection_ac = Dense(emb_size_quad_out, emb_size_edge)

    def forward(
        self,
        m: torch.Tensor,
        bases: dict[str, torch.Tensor],
        quad: dict[str, torch.Tensor],
        swap: torch.Tensor,
    ) -> torch.Tensor:
        x = self.dense_db(m)
        x = self.down_projection(self.scale_rbf(x * self.mlp_rbf(bases["rad"])))
        x = self.scale_cbf(x[quad["in_d"]] * self.mlp_cbf(bases["cir"]))
        x = self.mlp_sbf(bases["rad_w"], bases["sph"], x[quad["quad_in"]], quad["quad_out"])
        x = self.scale_sbf_sum(x)
        return _symmetric(x, self.up_projection_ca, self.up_projection_ac, swap)


class PairInteraction(nn.Module):
    """Atom-to-atom: ``up(bilinear(Σ_{j} rad_ij ⊗ down(h_j)))`` over the atom graph."""

    def __init__(
        self, emb_size_atom: int, emb_size_pair_in: int, emb_size_pair_out: int, emb_size_rbf: int
    ) -> None:
        super().__init__()
        self.bilinear = Dense(emb_size_rbf * emb_size_pair_in, emb_size_pair_out, activation=False)
        self.scale_rbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_size_atom, emb_size_pair_in)
        self.up_projection = Dense(emb_size_pair_out, emb_size_atom)

    def forward(self, h: torch.Tensor, rad: torch.Tensor, edges: Edges) -> torch.Tensor:
        x = self.down_projection(h)[edges.index[1]]
        x = scatter_sum(rad[:, :, None] * x[:, None, :], edges.index[0], h.shape[0])
        x = self.bilinear(x.reshape(h.shape[0], x.shape[1] * x.shape[2]))
        return self.up_projection(self.scale_rbf_sum(x))


class InteractionBlock(nn.Module):
    """One GemNet-OC interaction block: edge updates from triplets (+ quadruplets, +
    atom-to-edge), atom updates from edges (+ edge-to-atom, + atom-to-atom), residuals."""

    def __init__(self, sizes: dict[str, int], flags: dict[str, bool]) -> None:
        super().__init__()
        a, e, s = sizes["emb_size_atom"], sizes["emb_size_edge"], sizes
        trip = (s["emb_size_trip_in"], s["emb_size_trip_out"], s["emb_size_rbf"], s["emb_size_cbf"])
        self.dense_ca = Dense(e, e)
        self.trip_interaction = TripletInteraction(e, e, *trip)
        self.quad_interaction = (
            QuadrupletInteraction(
                e,
                s["emb_size_quad_in"],
                s["emb_size_quad_out"],
                s["emb_size_rbf"],
                s["emb_size_cbf"],
                s["emb_size_sbf"],
            )
            if flags["quad_interaction"]
            else None
        )
        self.atom_edge_interaction = (
            TripletInteraction(a, e, *trip) if flags["atom_edge_interaction"] else None
        )
        self.edge_atom_interaction = (
            TripletInteraction(e, a, *trip, symmetric_mp=False)
            if flags["edge_atom_interaction"]
            else None
        )
        self.atom_interaction = (
            PairInteraction(a, s["emb_size_aint_in"], s["emb_size_aint_out"], s["emb_size_rbf"])
            if flags["atom_interaction"]
            else None
        )
        self.layers_before_skip = nn.ModuleList(
            ResidualLayer(e) for _ in range(s["num_before_skip"])
        )
        self.layers_after_skip = nn.ModuleList(ResidualLayer(e) for _ in range(s["num_after_skip"]))
        self.atom_emb_layers = nn.ModuleList(
            ResidualLayer(a) for _ in range(s["num_atom_emb_layers"])
        )
        self.atom_update = AtomUpdateBlock(a, e, s["emb_size_rbf"], s["num_atom"])
        self.concat_layer = EdgeEmbedding(a, e, e)
        self.residual_m = nn.ModuleList(ResidualLayer(e) for _ in range(s["num_concat"]))
        num_eint = 2 + flags["quad_interaction"] + flags["atom_edge_interaction"]
        num_aint = 1 + flags["edge_atom_interaction"] + flags["atom_interaction"]
        self.inv_sqrt_num_eint, self.inv_sqrt_num_aint = num_eint**-0.5, num_aint**-0.5

    def forward(
        self, h: torch.Tensor, m: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Atom [N, A] and edge [E, C] features -> updated ones."""
        b, swap = ctx.bases, ctx.swap
        x = self.dense_ca(m) + self.trip_interaction(m, b["e2e"], ctx.trip["e2e"], swap)
        if self.quad_interaction is not None:
            x = x + self.quad_interaction(m, b["qint"], ctx.quad, swap)
        if self.atom_edge_interaction is not None:
            x = x + self.atom_edge_interaction(
                h, b["a2e"], ctx.trip["a2e"], swap, expand=ctx.aeint.index[1]
            )
        x = x * self.inv_sqrt_num_eint
        h_new = h
        if self.edge_atom_interaction is not None:
            h_new = h_new + self.edge_atom_interaction(
                m, b["e2a"], ctx.trip["e2a"], None, agg=ctx.aeint.index[0], agg_size=ctx.num_atoms
            )
        if self.atom_interaction is not None:
            h_new = h_new + self.atom_interaction(h, ctx.a2a_rad, ctx.aint)
        h = h_new * self.inv_sqrt_num_aint
        for layer in self.layers_before_skip:
            x = layer(x)
        m = (m + x) * INV_SQRT_2
        for layer in self.layers_after_skip:
            m = layer(m)
        for layer in self.atom_emb_layers:
            h = layer(h)
        h = (h + self.atom_update(m, ctx.rbf_h, ctx.main.index[0], ctx.num_atoms)) * INV_SQRT_2
        m2 = self.concat_layer(h, m, ctx.main.index)
        for layer in self.residual_m:
            m2 = layer(m2)
        return h, (m + m2) * INV_SQRT_2
