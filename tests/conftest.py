"""Shared fixtures: a Lennard-Jones energy model to test the Potential machinery."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlip_scaling import keys


class LennardJones(nn.Module):
    """Shifted-free LJ pair energy in torch: e_i = ½ Σ_j 4ε[(σ/r)^12 − (σ/r)^6]."""

    direct_forces = False

    def __init__(self, cutoff: float = 5.0, sigma: float = 2.3, epsilon: float = 0.1) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.sigma = nn.Parameter(torch.tensor(sigma, dtype=torch.float64))
        self.epsilon = epsilon

    def forward(self, data: dict) -> dict:
        r = data[keys.EDGE_LENGTHS]
        sr6 = (self.sigma.to(r.dtype) / r) ** 6
        pair = 2.0 * self.epsilon * (sr6 * sr6 - sr6)
        atomic = torch.zeros(len(data[keys.POSITIONS]), dtype=r.dtype, device=r.device)
        atomic = atomic.index_add(0, data[keys.EDGE_INDEX][0], pair)
        return {keys.ATOMIC_ENERGIES: atomic}


@pytest.fixture
def lj_model() -> LennardJones:
    return LennardJones().double()
