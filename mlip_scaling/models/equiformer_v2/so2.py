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
        real, imag = torch.split(self.fc(x), self.out_features, dim=2)
        real_plus, real_minus = real.unbind(1)
        imag_plus, imag_minus = imag.unbind(1)
        plus = real_plus - imag_minus
        minus = real_minus + imag_plus
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
        *,
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
        # split (not narrow): one gradient concatenation instead of a zero-filled
        # full-size gradient per slice
        xs = torch.split(x, [self.sizes[0]] + [2 * n for n in self.sizes[1:]], dim=1)
        rads = [None] * len(self.sizes)
        if self.rad_func is not None:
            rad = self.rad_func(edge_features)
            rads = torch.split(rad, [n * cin for n in self.sizes], dim=1)
        n0 = self.sizes[0]
        x0 = xs[0].reshape(num_edges, n0 * cin)
        if rads[0] is not None:
            x0 = x0 * rads[0]
        y0 = self.fc_m0(x0)
        extra = None
        if self.extra:
            extra, y0 = torch.split(y0, [self.extra, y0.shape[1] - self.extra], dim=1)
        out = [y0.reshape(num_edges, n0, self.out_channels)]
        for n, conv, xm, rm in zip(self.sizes[1:], self.so2_m_conv, xs[1:], rads[1:]):
            xm = xm.reshape(num_edges, 2, n * cin)
            if rm is not None:
                xm = xm * rm[:, None]
            out.append(conv(xm).reshape(num_edges, 2 * n, self.out_channels))
        return torch.cat(out, dim=1), extra
