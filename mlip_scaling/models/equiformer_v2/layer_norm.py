"""Equivariant RMS layer norm over spherical-harmonic embeddings ("rms_norm_sh")."""

from __future__ import annotations

import torch
from torch import nn

from mlip_scaling.models.equiformer_v2.so3 import degree_index

__all__ = ["EquivariantRMSNorm"]


class EquivariantRMSNorm(nn.Module):
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
        balance = 1.0 / (2 * index.to(torch.get_default_dtype()) + 1) / (lmax + 1)
        dev = torch.get_default_device()
        self.register_buffer("expand_index", index.to(dev))
        self.register_buffer("balance", balance.to(dev))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = x[:, :1]
        x = torch.cat([x0 - x0.mean(dim=2, keepdim=True), x[:, 1:]], dim=1)
        sq = torch.einsum("nkc,k->nc", x.pow(2), self.balance)
        inv = (sq.mean(dim=1) + self.eps).rsqrt()[:, None, None]
        weight = self.affine_weight.index_select(0, self.expand_index)[None]
        out = x * inv * weight
        return torch.cat([out[:, :1] + self.affine_bias, out[:, 1:]], dim=1)
