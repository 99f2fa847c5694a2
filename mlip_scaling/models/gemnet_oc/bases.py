"""Basis functions of the GemNet-OC family (fairchem's ``gemnet_oc`` definitions).

* radial: ``num_radial`` Gaussians on the scaled distance ``x = d / cutoff`` with centres
  ``linspace(0, 1, R)`` and width ``1 / (R - 1)``, times the polynomial envelope
  ``1 + a x^p + b x^(p+1) + c x^(p+2)`` (zero for ``x >= 1``; value, slope and curvature
  vanish at ``x = 1``);
* circular: the real spherical harmonics with ``m = 0`` of ``cos θ``,
  ``Y_l0 = sqrt((2l+1)/4π) P_l(cos θ)``, ``l < L``;
* spherical (two angles): all real spherical harmonics ``Y_lm(θ, φ)`` (``L²`` functions,
  per ``l``: ``m = 0``, the cosine terms ``m = 1..l``, then the sine terms ``m = l..1``,
  Condon-Shortley phase), or the outer product ``Y_a0(cos θ) Y_b0(cos φ)``
  (``legendre_outer``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["SBF_KINDS", "circular_basis", "radial_basis", "spherical_basis", "dihedral"]

#: the two-angle bases that are implemented
SBF_KINDS = ("spherical_harmonics", "legendre_outer")


def radial_basis(d: torch.Tensor, cutoff: float, num_radial: int, exponent: int) -> torch.Tensor:
    """Enveloped Gaussians of distances ``d`` [E] (Å) -> [E, num_radial]."""
    x = d / cutoff
    p = float(exponent)
    a, b, c = -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2
    env = 1 + a * x**p + b * x ** (p + 1) + c * x ** (p + 2)
    env = torch.where(x < 1, env, torch.zeros_like(x))
    offsets = torch.linspace(0.0, 1.0, num_radial, dtype=d.dtype, device=d.device)
    coeff = -0.5 / (1.0 / (num_radial - 1)) ** 2
    return env[:, None] * torch.exp(coeff * (x[:, None] - offsets) ** 2)


def _prefactor(degree: int, order: int) -> float:
    return math.sqrt(
        (2 * degree + 1)
        / (4 * math.pi)
        * math.factorial(degree - order)
        / math.factorial(degree + order)
    )


def _legendre(z: torch.Tensor, num: int) -> list[torch.Tensor]:
    out = [torch.ones_like(z), z]
    for n in range(2, num):
        out.append(((2 * n - 1) * z * out[n - 1] - (n - 1) * out[n - 2]) / n)
    return out[:num]


def circular_basis(cos: torch.Tensor, num_spherical: int) -> torch.Tensor:
    """``Y_l0(cos θ)`` for ``l < num_spherical``: ``cos`` [T] -> [T, L]."""
    return torch.stack(
        [_prefactor(n, 0) * p for n, p in enumerate(_legendre(cos, num_spherical))], dim=1
    )


def _associated_legendre(z: torch.Tensor, num: int) -> dict[tuple[int, int], torch.Tensor]:
    """``P_l^m(z)`` for ``0 <= m <= l < num`` (Condon-Shortley phase)."""
    sin = torch.sqrt(1 - z * z)
    p = {(0, 0): torch.ones_like(z)}
    for m in range(1, num):
        p[(m, m)] = (1 - 2 * m) * sin * p[(m - 1, m - 1)]
    for m in range(num - 1):
        p[(m + 1, m)] = (2 * m + 1) * z * p[(m, m)]
    for degree in range(2, num):
        for m in range(degree - 1):
            p[(degree, m)] = (
                (2 * degree - 1) * z * p[(degree - 1, m)] - (degree + m - 1) * p[(degree - 2, m)]
            ) / (degree - m)
    return p


def spherical_basis(
    cos: torch.Tensor, phi: torch.Tensor, num_spherical: int, kind: str
) -> torch.Tensor:
    """Two-angle basis of ``cos θ`` [Q] and ``φ`` [Q] (rad) -> [Q, num_spherical²]."""
    if kind == "legendre_outer":
        a, b = circular_basis(cos, num_spherical), circular_basis(torch.cos(phi), num_spherical)
        return (a[:, :, None] * b[:, None, :]).reshape(cos.shape[0], num_spherical**2)
    if kind != "spherical_harmonics":
        raise ValueError(f"unknown spherical basis {kind!r}; known: {SBF_KINDS}")
    p = _associated_legendre(cos, num_spherical)
    out = []
    for degree in range(num_spherical):
        out.append(_prefactor(degree, 0) * p[(degree, 0)])
        norm = [math.sqrt(2) * (-1) ** m * _prefactor(degree, m) for m in range(degree + 1)]
        out += [norm[m] * p[(degree, m)] * torch.cos(m * phi) for m in range(1, degree + 1)]
        out += [norm[m] * p[(degree, m)] * torch.sin(m * phi) for m in range(degree, 0, -1)]
    return torch.stack(out, dim=1)


def dihedral(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (rad, in [0, π]) between vectors ``a`` and ``b`` [Q, 3], as fairchem's
    ``get_angle``: ``atan2(max(|a × b|, 1e-9), a · b)``."""
    y = torch.linalg.cross(a, b).norm(dim=-1).clamp(min=1e-9)
    return torch.atan2(y, (a * b).sum(-1))
