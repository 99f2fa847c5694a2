"""Building blocks of the GemNet-OC family, named as fairchem's ``gemnet_oc`` modules so
that fairchem's state dicts load by name.

``Dense`` is a bias-free linear layer with an optional scaled SiLU (``silu(x) / 0.6``);
``ResidualLayer`` two of them with a skip, ``(x + f(x)) / √2``; ``ScaleFactor`` a fitted
constant (fairchem: 0 means not fitted, i.e. 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlip_scaling.models.blocks import scatter_sum

__all__ = [
    "AtomUpdateBlock",
    "BasisEmbedding",
    "Bilinear",
    "Dense",
    "OutputBlock",
    "ResidualLayer",
    "ScaleFactor",
    "mlp",
]

INV_SQRT_2 = 1 / math.sqrt(2.0)


class Dense(nn.Module):
    """``y = act(x W^T (+ b))`` with ``act`` the scaled SiLU or the identity."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, activation: bool = True
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return torch.nn.functional.silu(x) * (1 / 0.6) if self.activation else x


class ResidualLayer(nn.Module):
    """``(x + Dense(Dense(x))) / √2`` (widths ``units``)."""

    def __init__(self, units: int) -> None:
        super().__init__()
        self.dense_mlp = nn.Sequential(Dense(units, units), Dense(units, units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.dense_mlp(x)) * INV_SQRT_2


class ScaleFactor(nn.Module):
    """Multiply by the stored ``scale_factor`` (a buffer; 0 means 1, as in fairchem)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale_factor", torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_factor.to(x.dtype)
        return torch.where(s == 0, x, x * s)


def mlp(units_in: int, units: int, hidden: int) -> nn.ModuleList:
    """fairchem's ``get_mlp``: a Dense when the widths differ, then ``hidden`` residuals."""
    layers = [Dense(units_in, units)] if units_in != units else []
    return nn.ModuleList(layers + [ResidualLayer(units) for _ in range(hidden)])


class BasisEmbedding(nn.Module):
    """Learned projection of a radial basis [E, R]: ``weight`` [R, S, C] with an angular
    part (:meth:`per_edge` -> [E, C', S], fairchem's reshape of the weight), [C, R]
    without (:meth:`radial` -> [E, C])."""

    def __init__(self, num_radial: int, emb_size: int, num_spherical: int | None = None) -> None:
        super().__init__()
        shape = (
            (emb_size, num_radial)
            if num_spherical is None
            else (num_radial, num_spherical, emb_size)
        )
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.normal_(self.weight, std=1 / math.sqrt(num_radial * (num_spherical or 1)))
        self.num_spherical = num_spherical

    def per_edge(self, rad: torch.Tensor) -> torch.Tensor:
        """[E, R] -> [E, C, S]."""
        num_radial, num_spherical, width = self.weight.shape
        out = rad @ self.weight.reshape(num_radial, num_spherical * width)
        return out.reshape(rad.shape[0], width, num_spherical)

    def radial(self, rad: torch.Tensor) -> torch.Tensor:
        """[E, R] -> [E, C]."""
        return rad @ self.weight.T


class Bilinear(nn.Module):
    """fairchem's ``EfficientInteractionBilinear``: for every output edge ``o``,
    ``bilinear(Σ_s W[o, :, s] ⊗ Σ_{t -> o} sph[t, s] m[t])``; with ``agg``/``agg_size`` the
    per-edge products are first summed into ``agg_size`` atoms."""

    def __init__(self, emb_size_in: int, emb_size_interm: int, emb_size_out: int) -> None:
        super().__init__()
        self.bilinear = Dense(emb_size_in * emb_size_interm, emb_size_out, activation=False)

    def forward(
        self,
        rad_w: torch.Tensor,
        sph: torch.Tensor,
        m: torch.Tensor,
        out: torch.Tensor,
        agg: torch.Tensor | None = None,
        agg_size: int = 0,
    ) -> torch.Tensor:
        """``rad_w`` [E, C, S], ``sph`` [T, S], ``m`` [T, Cin], ``out`` [T] -> [E or
        agg_size, Cout]."""
        num = rad_w.shape[0]  # one angular function at a time: no [T, S, Cin] tensor
        sph_m = torch.stack(
            [scatter_sum(sph[:, k, None] * m, out, num) for k in range(sph.shape[1])], dim=1
        )  # [E, S, Cin]
        x = torch.bmm(rad_w, sph_m)  # [E, C, Cin]
        if agg is not None:
            x = scatter_sum(x, agg, agg_size)
        return self.bilinear(x.reshape(x.shape[0], x.shape[1] * x.shape[2]))


class AtomUpdateBlock(nn.Module):
    """Atom update: ``MLP(scale · Σ_{e: centre i} m_e ⊙ W rbf_e)``."""

    def __init__(
        self, emb_size_atom: int, emb_size_edge: int, emb_size_rbf: int, hidden: int
    ) -> None:
        super().__init__()
        self.dense_rbf = Dense(emb_size_rbf, emb_size_edge, activation=False)
        self.scale_sum = ScaleFactor()
        self.layers = mlp(emb_size_edge, emb_size_atom, hidden)

    def forward(
        self, m: torch.Tensor, rbf: torch.Tensor, centre: torch.Tensor, num_atoms: int
    ) -> torch.Tensor:
        x = self.scale_sum(scatter_sum(m * self.dense_rbf(rbf), centre, num_atoms))
        for layer in self.layers:
            x = layer(x)
        return x


class OutputBlock(AtomUpdateBlock):
    """Per-block output: atom features for the energy and (direct forces) edge features."""

    def __init__(
        self,
        emb_size_atom: int,
        emb_size_edge: int,
        emb_size_rbf: int,
        hidden: int,
        hidden_afteratom: int,
        direct_forces: bool,
    ) -> None:
        super().__init__(emb_size_atom, emb_size_edge, emb_size_rbf, hidden)
        self.seq_energy2 = (
            mlp(emb_size_atom, emb_size_atom, hidden_afteratom) if hidden_afteratom >= 1 else None
        )
        self.direct_forces = direct_forces
        if direct_forces:
            self.scale_rbf_F = ScaleFactor()
            self.seq_forces = mlp(emb_size_edge, emb_size_edge, hidden)
            self.dense_rbf_F = Dense(emb_size_rbf, emb_size_edge, activation=False)

    def forward(
        self, h: torch.Tensor, m: torch.Tensor, rbf: torch.Tensor, centre: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> atom features [N, A] and edge features [E, C] (None without direct forces)."""
        x_e = super().forward(m, rbf, centre, h.shape[0])
        if self.seq_energy2 is not None:
            x_e = (x_e + h) * INV_SQRT_2
            for layer in self.seq_energy2:
                x_e = layer(x_e)
        if not self.direct_forces:
            return x_e, None
        x_f = m
        for layer in self.seq_forces:
            x_f = layer(x_f)
        return x_e, self.scale_rbf_F(x_f * self.dense_rbf_F(rbf))
