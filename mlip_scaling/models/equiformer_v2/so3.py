"""SO(3) helpers: coefficient layouts, Wigner-D matrices, edge-frame rotations, S² grids.

Embeddings are ``[N, (lmax+1)^2, C]`` tensors of real spherical-harmonic coefficients in
e3nn's basis and order (degree ``l`` major, order ``m = -l..l`` minor; ``l = 1`` is
``(x, y, z)``; the polar axis of the ``m = 0`` harmonics is ``y``). Inside an edge frame
(edge along ``+y``) only orders ``|m| <= mmax`` are kept, stored "m-primary":
all ``m = 0`` coefficients (``l = 0..lmax``), then for ``m = 1..mmax`` the ``+m``
coefficients (``l = m..lmax``) followed by the ``-m`` ones.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from e3nn import o3
from torch import nn

from mlip_scaling.models.equiformer_v2.constants import ExactConstants
from mlip_scaling.models.equiformer_v2.fused import s2_activation

__all__ = [
    "EdgeRotation",
    "S2Grid",
    "SO3Linear",
    "degree_index",
    "m_primary_index",
    "m_sizes",
    "num_coefficients",
    "prepare_couplings",
    "wigner_d_blocks",
]


def num_coefficients(lmax: int) -> int:
    """Number of coefficients of degrees ``0..lmax``."""
    return (lmax + 1) ** 2


def degree_index(lmax: int) -> torch.Tensor:
    """[(lmax+1)^2] long: the degree ``l`` of every coefficient."""
    return torch.cat(
        [torch.full((2 * l + 1,), l, dtype=torch.long, device="cpu") for l in range(lmax + 1)]
    )


def m_sizes(lmax: int, mmax: int) -> list[int]:
    """Coefficients per order: ``lmax+1`` for ``m = 0``, ``lmax-m+1`` for each sign of m>0."""
    return [lmax + 1 - m for m in range(mmax + 1)]


def _m_primary_positions(lmax: int, mmax: int) -> list[int]:
    idx = [l * l + l for l in range(lmax + 1)]
    for m in range(1, mmax + 1):
        idx += [l * l + l + m for l in range(m, lmax + 1)]
        idx += [l * l + l - m for l in range(m, lmax + 1)]
    return idx


def m_primary_index(lmax: int, mmax: int) -> torch.Tensor:
    """[K] long: positions (in the full l-major layout) of the m-primary reduced layout."""
    return torch.tensor(_m_primary_positions(lmax, mmax), dtype=torch.long, device="cpu")


def _default_device() -> torch.device:
    return torch.get_default_device()


#: coupling tables by degree; a plain dict (not ``functools.cache``) so that compiled and
#: exported forwards read a filled table as a constant instead of tracing e3nn
_COUPLINGS: dict[tuple, torch.Tensor] = {}


def _coupling(
    l: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """[9(2l-1)^2, (2l+1)^2] float64 map from ``vec(D^{l-1} ⊗ D^1)`` to ``vec(D^l)``.

    With e3nn's isometry ``C`` [(2l-1)·3, 2l+1] coupling ``(l-1) ⊗ 1 -> l`` (its 3j symbols),
    ``D^l = C^T (D^{l-1} ⊗ D^1) C``; the rows are ordered ``(a, b, i, j)`` for the product
    ``D^{l-1}_{ab} D^1_{ij}`` so that the map is one matrix product per edge batch. Kept
    per dtype and device (computed once in float64 on the CPU).
    """
    key = (l, dtype, torch.device(device))
    if key not in _COUPLINGS:
        exact = (l, torch.float64, torch.device("cpu"))
        if exact not in _COUPLINGS:
            with torch.device("cpu"):
                w3j = o3.wigner_3j(l - 1, 1, l, dtype=torch.float64)
            c = (w3j * math.sqrt(2 * l + 1)).reshape(2 * l - 1, 3, 2 * l + 1)
            _COUPLINGS[exact] = torch.einsum("aip,bjq->abijpq", c, c).reshape(
                9 * (2 * l - 1) ** 2, (2 * l + 1) ** 2
            )
        _COUPLINGS[key] = _COUPLINGS[exact].to(dtype=dtype, device=device)
    return _COUPLINGS[key]


def prepare_couplings(lmax: int) -> None:
    """Build the coupling tables of degrees ``2..lmax`` now, outside any traced forward."""
    for l in range(2, lmax + 1):
        _coupling(l)


def wigner_d_blocks(rot: torch.Tensor, lmax: int) -> list[torch.Tensor]:
    """Wigner-D blocks ``D^l(R)`` [E, 2l+1, 2l+1] for ``l = 0..lmax`` of rotations ``rot``.

    Built recursively as polynomials of the rotation matrix (``D^1 = R`` in e3nn's basis,
    ``D^l = C^T (D^{l-1} ⊗ D^1) C``), so they are exact, smooth and differentiable for
    every rotation (no Euler-angle singularities). Each degree is one outer product with a
    long inner dimension and one [E, 9(2l-1)^2] x [9(2l-1)^2, (2l+1)^2] matrix product,
    which costs far less (forward and both backwards) than products of 3-wide blocks.
    """
    n = rot.shape[0]
    blocks = [torch.ones(n, 1, 1, dtype=rot.dtype, device=rot.device)]
    if lmax >= 1:
        blocks.append(rot)
    rot_flat = rot.reshape(n, 1, 9)
    for l in range(2, lmax + 1):
        coupling = _coupling(l, rot.dtype, rot.device)
        d2 = (2 * l - 1) ** 2
        outer = (blocks[-1].reshape(n, d2, 1) * rot_flat).reshape(n, 9 * d2)
        blocks.append((outer @ coupling).reshape(n, 2 * l + 1, 2 * l + 1))
    return blocks


class EdgeRotation:
    """Rotate embeddings into edge frames (keeping ``|m| <= mmax``) and back.

    Args:
        rot: [E, 3, 3] rotations taking each edge direction to ``+y``.
        lmax, mmax: degrees and orders kept.
    """

    def __init__(self, rot: torch.Tensor, lmax: int, mmax: int) -> None:
        self.lmax, self.mmax = lmax, mmax
        blocks = wigner_d_blocks(rot, lmax)
        dev = rot.device
        # rows of D^l kept by the |m| <= mmax truncation, placed block-diagonally
        parts = []
        for l, d in enumerate(blocks):
            k = min(l, mmax)
            rows = d.narrow(1, l - k, 2 * k + 1)
            parts.append(
                torch.nn.functional.pad(rows, (l * l, num_coefficients(lmax) - (l + 1) ** 2))
            )
        self.perm = _reduced_l_major_positions(lmax, mmax).to(dev)
        #: [E, K, (lmax+1)^2] global -> edge frame (m-primary rows)
        self.to_mat = torch.cat(parts, dim=1).index_select(1, self.perm)
        rescale = torch.tensor(
            [
                1.0 if l <= mmax else math.sqrt((2 * l + 1) / (2 * mmax + 1))
                for l in range(lmax + 1)
            ],
            dtype=rot.dtype,
            device="cpu",
        )[degree_index(lmax)].to(dev)
        #: [E, (lmax+1)^2, K] edge -> global frame, degrees l > mmax rescaled
        self.from_mat = (self.to_mat.transpose(1, 2) * rescale[:, None]).contiguous()

    def to_edge(self, x: torch.Tensor) -> torch.Tensor:
        """[E, (lmax+1)^2, C] (global frame) -> [E, K, C] (edge frame, m-primary)."""
        return torch.bmm(self.to_mat, x)

    def from_edge(self, y: torch.Tensor) -> torch.Tensor:
        """[E, K, C] (edge frame, m-primary) -> [E, (lmax+1)^2, C] (global frame)."""
        return torch.bmm(self.from_mat, y)


def _reduced_l_major_positions(lmax: int, mmax: int) -> torch.Tensor:
    """For each m-primary coefficient, its position in the reduced l-major layout."""
    reduced = [
        l * l + l + m for l in range(lmax + 1) for m in range(-min(l, mmax), min(l, mmax) + 1)
    ]
    where = {full: i for i, full in enumerate(reduced)}
    return torch.tensor(
        [where[i] for i in _m_primary_positions(lmax, mmax)], dtype=torch.long, device="cpu"
    )


class SO3Linear(nn.Module):
    """Degree-wise linear map ``[N, (lmax+1)^2, C_in] -> [N, (lmax+1)^2, C_out]``.

    One weight matrix per degree shared by its orders; a bias on ``l = 0`` only.
    """

    def __init__(self, in_features: int, out_features: int, lmax: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.lmax = in_features, out_features, lmax
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(lmax + 1, out_features, in_features))
        nn.init.uniform_(self.weight, -bound, bound)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.register_buffer("expand_index", degree_index(lmax).to(_default_device()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.index_select(0, self.expand_index)
        out = torch.einsum("nmi,moi->nmo", x, weight)
        return torch.cat([out[:, :1] + self.bias, out[:, 1:]], dim=1)


def _quadrature_weights(b: int) -> torch.Tensor:
    """Kostelec–Rockmore quadrature weights of a 2b-point latitude grid, in float64 [2b]."""
    j = np.arange(2 * b)[:, None]
    k = np.arange(b)[None, :]
    inner = (np.sin((2 * j + 1) * (2 * k + 1) * math.pi / (4.0 * b)) / (2 * k + 1)).sum(axis=1)
    w = (2.0 / b) * np.sin(math.pi * (2 * np.arange(2 * b) + 1) / (4.0 * b)) * inner
    return torch.from_numpy(w / (2.0 * (2 * b) ** 2))


@cache
def _grid_matrices(lmax: int, mmax: int, resolution: int | None, m_primary: bool):
    """(to_grid [G, K], from_grid [G, K]) float64 CPU for coefficients with ``|m| <= mmax``.

    e3nn computes its quadrature weights in the default dtype whatever ``dtype`` it is
    given, so the projection back is rescaled by weights computed here in float64: the
    matrices are exact to float64 without touching the global default dtype.
    """
    with torch.device("cpu"):
        return _grid_matrices_cpu(lmax, mmax, resolution, m_primary)


def _grid_matrices_cpu(lmax: int, mmax: int, resolution: int | None, m_primary: bool):
    lat = 2 * (lmax + 1) if resolution is None else resolution
    lon = 2 * (mmax + 1) + 1 if lmax == mmax else 2 * mmax + 1
    lon = lon if resolution is None else resolution
    to_grid = o3.ToS2Grid(lmax, (lat, lon), normalization="component", dtype=torch.float64)
    from_grid = o3.FromS2Grid((lat, lon), lmax, normalization="component", dtype=torch.float64)
    e3nn_weights = o3._s2grid._quadrature_weights(lat // 2, dtype=torch.float64)
    from_shb = from_grid.shb * (_quadrature_weights(lat // 2) / e3nn_weights)[None, :, None]
    to_mat = torch.einsum("mbi,am->bai", to_grid.shb, to_grid.sha).reshape(lat * lon, -1)
    from_mat = torch.einsum("am,mbi->bai", from_grid.sha, from_shb).reshape(lat * lon, -1)
    scale = torch.tensor(
        [1.0 if l <= mmax else math.sqrt((2 * l + 1) / (2 * mmax + 1)) for l in range(lmax + 1)],
        dtype=torch.float64,
    )[degree_index(lmax)]
    if m_primary:
        keep = m_primary_index(lmax, mmax)
    else:
        keep = torch.tensor(
            [l * l + l + m for l in range(lmax + 1) for m in range(-min(l, mmax), min(l, mmax) + 1)]
        )
    return (to_mat * scale)[:, keep], (from_mat * scale)[:, keep]


class S2Grid(ExactConstants):
    """Projection of coefficients to a ``resolution x resolution`` S² grid and back.

    ``m_primary=True`` uses the edge-frame layout (``|m| <= mmax``), otherwise the l-major
    layout. Shapes: coefficients [N, K, C] <-> grid values [N, G, C].
    """

    def __init__(self, lmax: int, mmax: int, resolution: int | None, m_primary: bool) -> None:
        super().__init__()
        to_mat, from_mat = _grid_matrices(lmax, mmax, resolution, m_primary)
        self.register_constant("to_grid_mat", to_mat)
        self.register_constant("from_grid_mat", from_mat)

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("gk,nkc->ngc", self.to_grid_mat, x)

    def from_grid(self, g: torch.Tensor) -> torch.Tensor:
        return torch.einsum("gk,ngc->nkc", self.from_grid_mat, g)

    def separable_act(self, scalars: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Separable S² activation: SiLU on ``scalars`` [N, C] for ``l = 0``, SiLU on the
        grid for the other coefficients of ``x`` [N, K, C] (fused on CPU where compiled)."""
        tensors = s2_activation(x, self.to_grid_mat, self.from_grid_mat[:, 1:])
        return torch.cat([torch.nn.functional.silu(scalars)[:, None], tensors], dim=1)

    def from_grid_higher(self, g: torch.Tensor) -> torch.Tensor:
        """Like ``from_grid`` but without the ``l = 0`` coefficient: [N, G, C] -> [N, K-1, C]."""
        return torch.einsum("gk,ngc->nkc", self.from_grid_mat[:, 1:], g)
