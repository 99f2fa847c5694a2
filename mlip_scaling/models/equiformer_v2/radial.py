"""Radial features: Gaussian smearing, radial MLPs, edge-degree embedding."""

from __future__ import annotations

import torch
from torch import nn

from mlip_scaling.models.equiformer_v2.constants import ExactConstants
from mlip_scaling.models.equiformer_v2.so3 import EdgeRotation

__all__ = ["EdgeDegreeEmbedding", "GaussianSmearing", "RadialMLP"]


class GaussianSmearing(ExactConstants):
    """Distances [E] (Å) -> [E, num_basis] Gaussians centred on ``linspace(start, stop)``,
    width ``width_factor`` times the spacing.

    The same function as :class:`mlip_scaling.models.blocks.GaussianSmearing`, kept apart
    for two reasons: its buffer is named ``offset`` (the state-dict key of every eqv2
    checkpoint and of fairchem's files), and its centres are exact in float64 whatever
    dtype the model was built in (blocks' centres are rounded to the build dtype, which
    moves float64 outputs by ~1e-8).
    """

    def __init__(self, start: float, stop: float, num_basis: int, width_factor: float = 2.0):
        super().__init__()
        offset = torch.linspace(start, stop, num_basis, device="cpu", dtype=torch.float64)
        spacing = (stop - start) / max(num_basis - 1, 1)
        self.coeff = -0.5 / (width_factor * spacing) ** 2
        self.num_basis = num_basis
        self.register_constant("offset", offset)

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.coeff * (dist[:, None] - self.offset) ** 2)


class RadialMLP(nn.Sequential):
    """Linear -> LayerNorm -> SiLU -> ... -> Linear over ``channels`` (first = input)."""

    def __init__(self, channels: list[int]) -> None:
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
            layers.append(nn.Linear(cin, cout))
            if i < len(channels) - 2:
                layers += [nn.LayerNorm(cout), nn.SiLU()]
        super().__init__(*layers)


class EdgeDegreeEmbedding(nn.Module):
    """Initial node features from the sum of neighbour radial functions.

    Each edge gives ``m = 0`` coefficients (all degrees, ``sphere_channels`` each) from an
    MLP of its scalar features, rotated from the edge frame to the global frame, weighted
    by the envelope and summed on the centre atom, divided by ``rescale``.
    """

    def __init__(
        self,
        *,
        sphere_channels: int,
        lmax: int,
        max_num_elements: int,
        edge_channels: list[int],
        rescale: float,
    ) -> None:
        super().__init__()
        self.sphere_channels, self.lmax, self.rescale = sphere_channels, lmax, rescale
        self.source_embedding = nn.Embedding(max_num_elements, edge_channels[-1])
        self.target_embedding = nn.Embedding(max_num_elements, edge_channels[-1])
        nn.init.uniform_(self.source_embedding.weight, -0.001, 0.001)
        nn.init.uniform_(self.target_embedding.weight, -0.001, 0.001)
        channels = [edge_channels[0] + 2 * edge_channels[-1], *edge_channels[1:]]
        self.rad_func = RadialMLP([*channels, (lmax + 1) * sphere_channels])

    def forward(
        self,
        numbers: torch.Tensor,
        edge_features: torch.Tensor,
        edge_index: torch.Tensor,
        envelope: torch.Tensor,
        rotation: EdgeRotation,
        num_nodes: int,
    ) -> torch.Tensor:
        """-> [N, (lmax+1)^2, sphere_channels]."""
        centre, neighbour = edge_index
        x_edge = torch.cat(
            [
                edge_features,
                self.source_embedding(numbers[neighbour]),
                self.target_embedding(numbers[centre]),
            ],
            dim=1,
        )
        m0 = self.rad_func(x_edge).reshape(-1, self.lmax + 1, self.sphere_channels)
        # only the m = 0 columns of the edge -> global rotation are needed
        msg = torch.bmm(rotation.from_mat.narrow(2, 0, self.lmax + 1), m0)
        msg = msg * envelope[:, None, None]
        out = msg.new_zeros(num_nodes, msg.shape[1], msg.shape[2])
        return out.index_add(0, centre, msg) / self.rescale
