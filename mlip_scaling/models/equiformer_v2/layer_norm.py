"""Equivariant norms over spherical-harmonic embeddings: ``rms_norm_sh`` and
``layer_norm_sh`` (fairchem's names)."""

from __future__ import annotations

import torch
from torch import nn

from mlip_scaling.models.equiformer_v2.config import NORM_TYPES
from mlip_scaling.models.equiformer_v2.constants import ExactConstants
from mlip_scaling.models.equiformer_v2.so3 import degree_index

__all__ = ["NORM_TYPES", "EquivariantLayerNormSH", "EquivariantRMSNorm", "make_norm"]



class EquivariantRMSNorm(ExactConstants):
    """RMS norm of ``[N, (lmax+1)^2, C]`` embeddings, equivariant under rotations.

    The ``l = 0`` channels are centred; one scale per node is the root of the mean
    (over channels) of the degree-balanced mean square (each degree weighs equally,
    each of its ``2l+1`` orders ``1/(2l+1)``). Affine: a weight per degree and channel,
    a bias on ``l = 0``.
    """

    def __init__(self, lmax: int, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.lmax, self.num_channels, self.eps = lmax, num_channels, eps
        self.affine_weight = nn.Parameter(torch.ones(lmax + 1, num_channels))
        self.affine_bias = nn.Parameter(torch.zeros(num_channels))
        index = degree_index(lmax)
        balance = 1.0 / (2 * index.to(torch.float64) + 1) / (lmax + 1)
        self.register_buffer("expand_index", index.to(torch.get_default_device()))
        self.register_constant("balance", balance)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = x[:, :1]
        x = torch.cat([x0 - x0.mean(dim=2, keepdim=True), x[:, 1:]], dim=1)
        sq = torch.einsum("nkc,k->nc", x.pow(2), self.balance)
        inv = (sq.mean(dim=1) + self.eps).rsqrt()[:, None, None]
        weight = self.affine_weight.index_select(0, self.expand_index)[None]
        out = x * inv * weight
        return torch.cat([out[:, :1] + self.affine_bias, out[:, 1:]], dim=1)


class EquivariantLayerNormSH(ExactConstants):
    """``layer_norm_sh``: a LayerNorm (weight and bias) on the ``l = 0`` channels, and one
    RMS scale per node over all ``l > 0`` coefficients (degree-balanced mean square,
    averaged over channels), with a weight per degree ``l >= 1`` and channel
    (``affine_weight`` [lmax, C]). Shapes: [N, (lmax+1)^2, C] -> same.
    """

    def __init__(self, lmax: int, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.lmax, self.num_channels, self.eps = lmax, num_channels, eps
        self.norm_l0 = nn.LayerNorm(num_channels, eps=eps)
        self.affine_weight = nn.Parameter(torch.ones(lmax, num_channels))
        index = degree_index(lmax)[1:]
        balance = 1.0 / (2 * index.to(torch.float64) + 1) / max(lmax, 1)
        self.register_buffer("expand_index", (index - 1).to(torch.get_default_device()))
        self.register_constant("balance", balance)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out0 = self.norm_l0(x[:, :1])
        if self.lmax == 0:
            return out0
        higher = x[:, 1:]
        sq = torch.einsum("nkc,k->nc", higher.pow(2), self.balance)
        inv = (sq.mean(dim=1) + self.eps).pow(-0.5)[:, None, None]
        weight = self.affine_weight.index_select(0, self.expand_index)[None]
        return torch.cat([out0, higher * (inv * weight)], dim=1)


def make_norm(norm_type: str, lmax: int, num_channels: int) -> nn.Module:
    """The equivariant norm named ``norm_type`` (one of :data:`NORM_TYPES`)."""
    if norm_type == "rms_norm_sh":
        return EquivariantRMSNorm(lmax, num_channels)
    if norm_type == "layer_norm_sh":
        return EquivariantLayerNormSH(lmax, num_channels)
    raise ValueError(f"unknown norm_type {norm_type!r}; expected one of {', '.join(NORM_TYPES)}")
