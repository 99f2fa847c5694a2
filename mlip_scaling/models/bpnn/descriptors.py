"""Atom-centred symmetry functions (Behler 2011) computed on the device, differentiable.

For a centre atom ``i`` with neighbours ``j`` (edges ``i -> j`` within the cutoff ``rc``,
periodic images included), element weights ``c_k(Z) > 0`` (``K`` learned chemical
channels, weighted ACSFs of Gastegger et al. 2018; one channel with ``c = 1`` is the
classic element-blind set) and the smooth envelope ``f_c`` (value and two derivatives
vanish at ``rc``):

* radial ``G2_{k,s}(i) = Σ_j c_k(Z_j) exp(-(r_ij - μ_s)² / 2σ²) f_c(r_ij)``, ``R`` shells
  ``μ_s = s·rc/R`` of width ``σ = rc/R``;
* angular ``G5_{k,t,ζ,λ}(i) = 2^(1-ζ) Σ_{j≠l} w_j w_l (1 + λ cos θ_jil)^ζ`` over ordered
  neighbour pairs, ``w_j = c_k(Z_j) exp(-r_ij² / 2σ_t²) f_c(r_ij)`` (``S`` widths
  ``σ_t = rc (t+1)/(S+1)``), ``ζ ∈ {1, 2, 4, ...}`` (``num_zeta`` values), ``λ = ±1``.

G5 is evaluated without enumerating triplets: the binomial expansion of ``(1 + λ cos)^ζ``
needs ``A_n = Σ_{j,l} w_j w_l (r̂_j·r̂_l)^n``, and ``(r̂_j·r̂_l)^n = Σ_{|α|=n} n!/α! r̂_j^α
r̂_l^α`` turns it into squared moments ``Σ_α n!/α! (Σ_j w_j r̂_j^α)²`` (monomials of degree
``n``); the ``j = l`` terms are then subtracted. The cost is linear in the edges.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlip_scaling.models.blocks import build_envelope, scatter_sum

__all__ = ["SymmetryFunctions", "monomial_table"]


def monomial_table(degree: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exponents [M, 3] of all monomials ``x^a y^b z^c`` with ``a+b+c <= degree``, their
    degrees [M] and multinomial coefficients ``n!/(a! b! c!)`` [M] (float64)."""
    rows = [(a, b, n - a - b) for n in range(degree + 1) for a in range(n, -1, -1)
            for b in range(n - a, -1, -1)]
    exps = torch.tensor(rows, dtype=torch.long, device="cpu")
    deg = exps.sum(dim=1)
    coef = [math.factorial(a + b + c) / (math.factorial(a) * math.factorial(b)
                                         * math.factorial(c)) for a, b, c in rows]
    return exps, deg, torch.tensor(coef, dtype=torch.float64, device="cpu")


def _tables(cutoff: float, num_radial: int, num_angular_radial: int,
            num_zeta: int) -> dict[str, torch.Tensor]:
    """Constant tables of the descriptor, built on the CPU in float64."""
    cpu, f64 = torch.device("cpu"), torch.float64
    mu = torch.arange(num_radial, dtype=f64, device=cpu) * (cutoff / num_radial)
    widths = cutoff * torch.arange(1, num_angular_radial + 1, dtype=f64, device=cpu)
    zetas = [2**k for k in range(num_zeta)]
    exps, deg, coef = monomial_table(zetas[-1])
    # [M, n+1]: multinomial weight of each monomial in the sum of its degree
    by_degree = torch.zeros(len(deg), zetas[-1] + 1, dtype=f64, device=cpu)
    by_degree[torch.arange(len(deg), device=cpu), deg] = coef
    # [n+1, 2Z]: 2^(1-ζ) C(ζ, n) λ^n, and [2Z] the j = l term 2^(1-ζ) (1+λ)^ζ
    expand = torch.zeros(zetas[-1] + 1, 2 * num_zeta, dtype=f64, device=cpu)
    diagonal = torch.zeros(2 * num_zeta, dtype=f64, device=cpu)
    for col, (zeta, lam) in enumerate((z, s) for z in zetas for s in (1.0, -1.0)):
        for n in range(zeta + 1):
            expand[n, col] = 2.0 ** (1 - zeta) * math.comb(zeta, n) * lam**n
        diagonal[col] = 2.0 ** (1 - zeta) * (1.0 + lam) ** zeta
    return {"mu": mu, "angular_coeff": -0.5 / (widths / (num_angular_radial + 1)) ** 2,
            "exponents": exps, "by_degree": by_degree, "expand": expand,
            "diagonal": diagonal}


class SymmetryFunctions(nn.Module):
    """Edges -> symmetry functions [N, D], ``D = K·R + K·S·2·num_zeta`` (see module notes).

    Args:
        cutoff: rc (Å).
        num_elements: number of elements (rows of the chemical weights).
        chemical_channels: K.
        num_radial: R radial shells of G2.
        num_angular_radial: S radial widths of G5.
        num_zeta: exponents ζ = 1, 2, 4, ..., 2^(num_zeta-1) of G5.
        envelope: ``"polynomial"`` (C2) or ``"cosine"`` (C1, Behler's original).
    """

    def __init__(self, cutoff: float, num_elements: int, chemical_channels: int,
                 num_radial: int, num_angular_radial: int, num_zeta: int,
                 envelope: str = "polynomial") -> None:
        super().__init__()
        if not 1 <= num_zeta <= 4:
            raise ValueError(f"num_zeta must be 1 to 4 (zeta up to 8), got {num_zeta}")
        self.cutoff = float(cutoff)
        self.envelope = build_envelope(envelope, cutoff)
        # softplus(0.5413) = 1: every channel starts element-blind, then learns weights
        self.chemical = nn.Parameter(torch.full((num_elements, chemical_channels), 0.5413)
                                     + 0.1 * torch.randn(num_elements, chemical_channels))
        device = self.chemical.device
        for name, table in _tables(cutoff, num_radial, num_angular_radial, num_zeta).items():
            self.register_buffer(name, table.to(device), persistent=False)
        self.radial_coeff = -0.5 / (cutoff / num_radial) ** 2
        self.num_features = chemical_channels * (num_radial + 2 * num_zeta * num_angular_radial)

    def _monomials(self, unit: torch.Tensor) -> torch.Tensor:
        """Unit vectors [E, 3] -> every monomial ``r̂^α`` [E, M]."""
        degree = int(self.by_degree.shape[1]) - 1
        ones = torch.ones_like(unit).unsqueeze(-1)
        powers = torch.cat([ones, unit.unsqueeze(-1).expand(-1, 3, degree)], dim=-1)
        powers = powers.cumprod(dim=-1)  # [E, 3, degree+1]: x^p, y^p, z^p
        e = self.exponents
        return powers[:, 0, e[:, 0]] * powers[:, 1, e[:, 1]] * powers[:, 2, e[:, 2]]

    def forward(self, centre: torch.Tensor, slot: torch.Tensor, vectors: torch.Tensor,
                lengths: torch.Tensor, num_atoms: int) -> torch.Tensor:
        """``centre`` [E] (atom i of each edge), ``slot`` [E] (element index of j),
        ``vectors`` [E, 3] and ``lengths`` [E] (Å) -> features [N, D]."""
        dtype = vectors.dtype
        weight = nn.functional.softplus(self.chemical.to(dtype))[slot]  # [E, K]
        fc = self.envelope(lengths)
        r = lengths.unsqueeze(-1)
        radial = torch.exp(self.radial_coeff * (r - self.mu.to(dtype)) ** 2)
        g2 = scatter_sum((weight * fc.unsqueeze(-1)).unsqueeze(-1) * radial.unsqueeze(1),
                         centre, num_atoms)  # [N, K, R]
        w = weight.unsqueeze(-1) * (fc.unsqueeze(-1) * torch.exp(
            self.angular_coeff.to(dtype) * r * r)).unsqueeze(1)  # [E, K, S]
        mono = self._monomials(vectors / r)
        moments = scatter_sum(w.unsqueeze(-1) * mono[:, None, None, :], centre, num_atoms)
        a_n = (moments * moments) @ self.by_degree.to(dtype)  # [N, K, S, n+1]
        self_terms = scatter_sum(w * w, centre, num_atoms).unsqueeze(-1)  # [N, K, S, 1]
        g5 = a_n @ self.expand.to(dtype) - self_terms * self.diagonal.to(dtype)
        return torch.cat([g2.flatten(1), g5.flatten(1)], dim=1)
