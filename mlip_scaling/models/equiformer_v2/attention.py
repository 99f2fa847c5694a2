"""Equivariant graph attention (SO(2) convolutions + separable S² activation), the
feed-forward network and the transformer block of EquiformerV2."""

from __future__ import annotations

import math

import torch
from torch import nn

from mlip_scaling.models.blocks import segment_softmax
from mlip_scaling.models.equiformer_v2.config import EquiformerV2Config
from mlip_scaling.models.equiformer_v2.layer_norm import make_norm
from mlip_scaling.models.equiformer_v2.so2 import SO2Convolution
from mlip_scaling.models.equiformer_v2.so3 import EdgeRotation, S2Grid, SO3Linear

__all__ = [
    "EdgeContext",
    "FeedForwardNetwork",
    "GraphAttention",
    "TransformerBlock",
    "feed_forward",
    "graph_attention",
]


class EdgeContext:
    """Per-forward edge data shared by all layers.

    Attributes: ``index`` [2, E] (row 0 centre, row 1 neighbour), ``features`` [E, F]
    (Gaussian-smeared distances), ``envelope`` [E], ``rotation`` (EdgeRotation),
    ``numbers`` [N] atomic numbers, ``batch`` [N] structure of each atom, ``vectors``
    [E, 3] edge vectors (Å).
    """

    def __init__(
        self, index, features, envelope, rotation: EdgeRotation, numbers, batch, vectors
    ) -> None:
        self.index, self.features, self.envelope = index, features, envelope
        self.rotation, self.numbers = rotation, numbers
        self.batch, self.vectors = batch, vectors


def smooth_leaky_relu(x: torch.Tensor, slope: float = 0.2) -> torch.Tensor:
    """``(1+a)/2 x + (1-a)/2 x (2σ(x) - 1)``: a smooth leaky ReLU."""
    return 0.5 * (1 + slope) * x + 0.5 * (1 - slope) * x * (2 * torch.sigmoid(x) - 1)


class GraphAttention(nn.Module):
    """Equivariant graph attention: messages from ``[x_neighbour, x_centre]`` rotated into
    the edge frame, an SO(2) convolution modulated by radial functions, separable S²
    activation, a second SO(2) convolution, multi-head attention weights from invariant
    ``m = 0`` features, rotation back and a degree-wise linear projection."""

    def __init__(
        self,
        *,
        sphere_channels: int,
        hidden_channels: int,
        num_heads: int,
        alpha_channels: int,
        value_channels: int,
        output_channels: int,
        lmax: int,
        mmax: int,
        grid_resolution: int | None,
        max_num_elements: int,
        edge_channels: list[int],
        alpha_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.alpha_dropout = nn.Dropout(alpha_drop) if alpha_drop > 0 else None
        self.num_heads, self.alpha_channels = num_heads, alpha_channels
        self.value_channels = value_channels
        self.source_embedding = nn.Embedding(max_num_elements, edge_channels[-1])
        self.target_embedding = nn.Embedding(max_num_elements, edge_channels[-1])
        nn.init.uniform_(self.source_embedding.weight, -0.001, 0.001)
        nn.init.uniform_(self.target_embedding.weight, -0.001, 0.001)
        rad_channels = [edge_channels[0] + 2 * edge_channels[-1], *edge_channels[1:]]
        self.so2_conv_1 = SO2Convolution(
            2 * sphere_channels,
            hidden_channels,
            lmax=lmax,
            mmax=mmax,
            edge_channels=rad_channels,
            extra_m0_channels=num_heads * alpha_channels + hidden_channels,
        )
        self.alpha_norm = nn.LayerNorm(alpha_channels)
        self.alpha_dot = nn.Parameter(torch.empty(num_heads, alpha_channels))
        bound = 1.0 / math.sqrt(alpha_channels)
        nn.init.uniform_(self.alpha_dot, -bound, bound)
        self.grid = S2Grid(lmax, mmax, grid_resolution, m_primary=True)
        self.so2_conv_2 = SO2Convolution(
            hidden_channels, num_heads * value_channels, lmax=lmax, mmax=mmax
        )
        self.proj = SO3Linear(num_heads * value_channels, output_channels, lmax)

    def forward(self, x: torch.Tensor, edges: EdgeContext) -> torch.Tensor:
        """[N, (lmax+1)^2, C] -> [N, (lmax+1)^2, output_channels]."""
        centre, neighbour = edges.index
        x_edge = torch.cat(
            [
                edges.features,
                self.source_embedding(edges.numbers[neighbour]),
                self.target_embedding(edges.numbers[centre]),
            ],
            dim=1,
        )
        msg = torch.cat([x[neighbour], x[centre]], dim=2)
        msg = edges.rotation.to_edge(msg)
        msg, extra = self.so2_conv_1(msg, x_edge)
        n_alpha = self.num_heads * self.alpha_channels
        alpha_feat, gating = (
            extra.narrow(1, 0, n_alpha),
            extra.narrow(1, n_alpha, extra.shape[1] - n_alpha),
        )
        msg = self.grid.separable_act(gating, msg)
        msg, _ = self.so2_conv_2(msg)
        alpha_feat = alpha_feat.reshape(-1, self.num_heads, self.alpha_channels)
        alpha_feat = smooth_leaky_relu(self.alpha_norm(alpha_feat))
        logits = torch.einsum("ehk,hk->eh", alpha_feat, self.alpha_dot)
        alpha, _ = segment_softmax(logits, centre, x.shape[0], weights=edges.envelope)
        alpha = alpha * edges.envelope[:, None]
        if self.alpha_dropout is not None:
            alpha = self.alpha_dropout(alpha)
        msg = msg.reshape(msg.shape[0], msg.shape[1], self.num_heads, self.value_channels)
        msg = (msg * alpha[:, None, :, None]).flatten(2)
        msg = edges.rotation.from_edge(msg)
        out = msg.new_zeros(x.shape[0], msg.shape[1], msg.shape[2]).index_add(0, centre, msg)
        return self.proj(out)


class FeedForwardNetwork(nn.Module):
    """Degree-wise linear -> separable S² activation (or grid MLP) -> degree-wise linear.

    ``grid_mlp=True`` (the OMat24 setting) applies a 3-layer MLP to the S² grid values and
    an MLP to the scalars; otherwise SiLU on the grid gated by a linear of the scalars.
    """

    def __init__(
        self,
        *,
        sphere_channels: int,
        hidden_channels: int,
        output_channels: int,
        lmax: int,
        grid_resolution: int | None,
        grid_mlp: bool,
    ) -> None:
        super().__init__()
        self.grid_mlp_enabled = grid_mlp
        self.so3_linear_1 = SO3Linear(sphere_channels, hidden_channels, lmax)
        self.grid = S2Grid(lmax, lmax, grid_resolution, m_primary=False)
        if grid_mlp:
            self.scalar_mlp = nn.Sequential(nn.Linear(sphere_channels, hidden_channels), nn.SiLU())
            self.grid_mlp = nn.Sequential(
                nn.Linear(hidden_channels, hidden_channels, bias=False),
                nn.SiLU(),
                nn.Linear(hidden_channels, hidden_channels, bias=False),
                nn.SiLU(),
                nn.Linear(hidden_channels, hidden_channels, bias=False),
            )
        else:
            self.gating_linear = nn.Linear(sphere_channels, hidden_channels)
        self.so3_linear_2 = SO3Linear(hidden_channels, output_channels, lmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scalars = x[:, 0]
        h = self.so3_linear_1(x)
        if self.grid_mlp_enabled:
            h = self.grid.from_grid(self.grid_mlp(self.grid.to_grid(h)))
            h = torch.cat([self.scalar_mlp(scalars)[:, None], h[:, 1:]], dim=1)
        else:
            h = self.grid.separable_act(self.gating_linear(scalars), h)
        return self.so3_linear_2(h)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + Attn(Norm(x))``, then ``x + FFN(Norm(x))``."""

    def __init__(self, cfg: EquiformerV2Config) -> None:
        super().__init__()
        lmax, c = cfg.lmax, cfg.sphere_channels
        self.norm_1 = make_norm(cfg.norm_type, lmax, c)
        self.ga = graph_attention(cfg, output_channels=c, alpha_drop=cfg.alpha_drop)
        self.drop_path = cfg.drop_path_rate
        self.norm_2 = make_norm(cfg.norm_type, lmax, c)
        self.ffn = feed_forward(cfg, output_channels=c)

    def forward(self, x: torch.Tensor, edges: EdgeContext) -> torch.Tensor:
        x = x + self._dropped(self.ga(self.norm_1(x), edges), edges.batch)
        return x + self._dropped(self.ffn(self.norm_2(x)), edges.batch)

    def _dropped(self, update: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Stochastic depth per structure while training (rate ``drop_path_rate``)."""
        if not self.training or self.drop_path <= 0:
            return update
        keep = 1.0 - self.drop_path
        num_structures = int(batch.max()) + 1 if batch.numel() else 0
        mask = torch.rand(num_structures, dtype=update.dtype, device=update.device) < keep
        return update * (mask.to(update.dtype) / keep)[batch][:, None, None]


def graph_attention(
    cfg: EquiformerV2Config, output_channels: int, alpha_drop: float = 0.0
) -> GraphAttention:
    """The graph attention of a model with hyperparameters ``cfg``."""
    return GraphAttention(
        sphere_channels=cfg.sphere_channels,
        hidden_channels=cfg.attn_hidden_channels,
        num_heads=cfg.num_heads,
        alpha_channels=cfg.attn_alpha_channels,
        value_channels=cfg.attn_value_channels,
        output_channels=output_channels,
        lmax=cfg.lmax,
        mmax=cfg.mmax,
        grid_resolution=cfg.grid_resolution,
        max_num_elements=cfg.max_num_elements,
        edge_channels=cfg.radial_channels,
        alpha_drop=alpha_drop,
    )


def feed_forward(cfg: EquiformerV2Config, output_channels: int) -> FeedForwardNetwork:
    """The feed-forward network of a model with hyperparameters ``cfg``."""
    return FeedForwardNetwork(
        sphere_channels=cfg.sphere_channels,
        hidden_channels=cfg.ffn_hidden_channels,
        output_channels=output_channels,
        lmax=cfg.lmax,
        grid_resolution=cfg.grid_resolution,
        grid_mlp=cfg.use_grid_mlp,
    )
