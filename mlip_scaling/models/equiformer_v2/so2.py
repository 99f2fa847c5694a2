"""SO(2) convolutions (eSCN) on edge-frame embeddings restricted to ``|m| <= mmax``.

In a frame whose polar axis is the edge, a rotation about the edge multiplies the pair
``(x_{+m}, x_{-m})`` by a 2-D rotation of angle ``m·φ``. A linear map that treats the pair
as one complex number (``out_+ = W_r x_+ - W_i x_-``, ``out_- = W_r x_- + W_i x_+``)
commutes with it, so these convolutions are equivariant and mix all degrees of one order.
"""

from __future__ import annotations

import torch
from torch import nn

from mlip_scaling.models.equiformer_v2.radial import RadialMLP
from mlip_scaling.models.equiformer_v2.so3 import m_sizes

__all__ = ["SO2Convolution"]


class SO2MConvolution(nn.Module):
    """Complex-linear map of the ``±m`` coefficients [E, 2, n·C_in] -> [E, 2, n·C_out]."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.fc = nn.Linear(in_features, 2 * out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        real, imag = (
            y.narrow(2, 0, self.out_features),
            y.narrow(2, self.out_features, self.out_features),
        )
        plus = real[:, 0] - imag[:, 1]
        minus = real[:, 1] + imag[:, 0]
        return torch.stack([plus, minus], dim=1)


class SO2Convolution(nn.Module):
    """SO(2) convolution of edge-frame embeddings [E, K, C_in] -> [E, K, C_out].

    Args:
        in_channels, out_channels: channels per coefficient.
        lmax, mmax: degrees and orders of the m-primary layout.
        edge_channels: ``[input, hidden, hidden]`` sizes of the radial MLP whose output
            scales every input feature per edge; None for no radial modulation.
        extra_m0_channels: extra invariant outputs of the ``m = 0`` map (returned apart).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        lmax: int,
        mmax: int,
        edge_channels: list[int] | None = None,
        extra_m0_channels: int = 0,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.sizes = m_sizes(lmax, mmax)
        self.extra = extra_m0_channels
        n0 = self.sizes[0]
        self.fc_m0 = nn.Linear(n0 * in_channels, n0 * out_channels + extra_m0_channels)
        self.so2_m_conv = nn.ModuleList(
            SO2MConvolution(n * in_channels, n * out_channels) for n in self.sizes[1:]
        )
        self.rad_func = None
        if edge_channels is not None:
            num_rad = sum(self.sizes) * in_channels
            self.rad_func = RadialMLP([*edge_channels, num_rad])

    def forward(
        self, x: torch.Tensor, edge_features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (out [E, K, C_out], extra m=0 features [E, extra] or None)."""
        num_edges, cin = x.shape[0], self.in_channels
        rad = self.rad_func(edge_features) if self.rad_func is not None else None
        n0 = self.sizes[0]
        x0 = x.narrow(1, 0, n0).reshape(num_edges, n0 * cin)
        if rad is not None:
            x0 = x0 * rad.narrow(1, 0, n0 * cin)
        y0 = self.fc_m0(x0)
        extra = y0.narrow(1, 0, self.extra) if self.extra else None
        y0 = y0.narrow(1, self.extra, y0.shape[1] - self.extra)
        out = [y0.reshape(num_edges, n0, self.out_channels)]
        offset, offset_rad = n0, n0 * cin
        for n, conv in zip(self.sizes[1:], self.so2_m_conv):
            xm = x.narrow(1, offset, 2 * n).reshape(num_edges, 2, n * cin)
            if rad is not None:
                xm = xm * rad.narrow(1, offset_rad, n * cin)[:, None]
            out.append(conv(xm).reshape(num_edges, 2 * n, self.out_channels))
            offset += 2 * n
            offset_rad += n * cin
        return torch.cat(out, dim=1), extra
