"""Building blocks shared by the energy models.

* radial bases of edge lengths: :class:`GaussianSmearing`, :class:`BesselBasis`;
* smooth cutoff envelopes: :class:`CosineCutoff` (C1), :class:`PolynomialCutoff` (C2 for
  ``p >= 2``), both 1 at r = 0 and 0 at and beyond the cutoff;
* :func:`mlp`, a multilayer perceptron builder;
* scatter helpers on ``index_add_`` / ``scatter_reduce`` (no torch-scatter):
  :func:`scatter_sum`, :func:`scatter_mean`, :func:`scatter_max`;
* :func:`segment_softmax`, a numerically stable (optionally weighted) softmax over the
  edges of each centre atom.

Shapes: ``E`` = edges, ``N`` = atoms (segments), ``R`` = radial basis size, ``...`` any
trailing feature dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "check_atomic_numbers",
    "BesselBasis",
    "CosineCutoff",
    "GaussianSmearing",
    "PolynomialCutoff",
    "build_envelope",
    "build_radial_basis",
    "mlp",
    "scatter_max",
    "scatter_mean",
    "scatter_sum",
    "segment_softmax",
]


class GaussianSmearing(nn.Module):
    """Edge lengths [E] (Å) -> [E, num_basis] Gaussians ``exp(-(r - μ_k)² / 2w²)``.

    Centres ``μ_k`` are evenly spaced on ``[start, stop]``; the width ``w`` is
    ``width_factor`` times their spacing.
    """

    def __init__(
        self, start: float, stop: float, num_basis: int, width_factor: float = 1.0
    ) -> None:
        super().__init__()
        self.num_basis = int(num_basis)
        spacing = (stop - start) / max(num_basis - 1, 1)
        self.coeff = -0.5 / (width_factor * spacing) ** 2
        self.register_buffer("centers", torch.linspace(start, stop, num_basis))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.coeff * (r[:, None] - self.centers.to(r.dtype)) ** 2)


class BesselBasis(nn.Module):
    """Edge lengths [E] (Å) -> [E, num_basis] ``sqrt(2/rc) sin(nπ r / rc) / r``, n = 1..R.

    With ``trainable=True`` the frequencies ``nπ/rc`` are parameters (as in NequIP/MACE).
    """

    def __init__(self, cutoff: float, num_basis: int, trainable: bool = False) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.num_basis = int(num_basis)
        freq = torch.arange(1, num_basis + 1, dtype=torch.float32) * (math.pi / cutoff)
        if trainable:
            self.frequencies = nn.Parameter(freq)
        else:
            self.register_buffer("frequencies", freq)
        self.prefactor = math.sqrt(2.0 / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r[:, None]
        return self.prefactor * torch.sin(self.frequencies.to(r.dtype) * r) / r


class CosineCutoff(nn.Module):
    """Envelope [E] ``½(cos(π r / rc) + 1)`` for r < rc, else 0: value and slope vanish at rc."""

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        u = (r / self.cutoff).clamp(max=1.0)
        return 0.5 * (torch.cos(math.pi * u) + 1.0)


class PolynomialCutoff(nn.Module):
    """Envelope [E] of MACE/DimeNet, ``u = r / rc``:
    ``1 - (p+1)(p+2)/2 u^p + p(p+2) u^(p+1) - p(p+1)/2 u^(p+2)`` for u < 1, else 0.

    Value, first and second derivative vanish at the cutoff (``p >= 2``).
    """

    def __init__(self, cutoff: float, p: int = 6) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        u = (r / self.cutoff).clamp(max=1.0)
        up = u**p
        env = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * up
            + p * (p + 2) * up * u
            - 0.5 * p * (p + 1) * up * u * u
        )
        return torch.where(u < 1.0, env, torch.zeros_like(env))


def build_radial_basis(kind: str, cutoff: float, num_basis: int) -> nn.Module:
    """``"bessel"`` or ``"gaussian"`` (centres on [0, cutoff]) radial basis module."""
    if kind == "bessel":
        return BesselBasis(cutoff, num_basis)
    if kind == "gaussian":
        return GaussianSmearing(0.0, cutoff, num_basis)
    raise ValueError(f"unknown radial basis {kind!r}; use 'bessel' or 'gaussian'")


def build_envelope(kind: str, cutoff: float, p: int = 6) -> nn.Module:
    """``"polynomial"`` (exponent ``p``) or ``"cosine"`` cutoff envelope module."""
    if kind == "polynomial":
        return PolynomialCutoff(cutoff, p)
    if kind == "cosine":
        return CosineCutoff(cutoff)
    raise ValueError(f"unknown envelope {kind!r}; use 'polynomial' or 'cosine'")


def mlp(
    channels: Sequence[int],
    activation: type[nn.Module] = nn.SiLU,
    layer_norm: bool = False,
    bias: bool = True,
) -> nn.Sequential:
    """Linear layers ``channels[0] -> ... -> channels[-1]`` with ``activation`` (and an
    optional LayerNorm before it) between them; the last layer is linear."""
    if len(channels) < 2:
        raise ValueError("an MLP needs at least input and output channels")
    layers: list[nn.Module] = []
    for k, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.Linear(cin, cout, bias=bias))
        if k < len(channels) - 2:
            if layer_norm:
                layers.append(nn.LayerNorm(cout))
            layers.append(activation())
    return nn.Sequential(*layers)


def _expand_index(index: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    return index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` [E, ...] into ``dim_size`` segments by ``index`` [E] -> [N, ...]."""
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Mean of the rows of ``src`` [E, ...] per segment -> [N, ...] (0 for empty segments)."""
    total = scatter_sum(src, index, dim_size)
    count = torch.bincount(index, minlength=dim_size).clamp_min(1).to(src.dtype)
    return total / count.view(-1, *([1] * (src.dim() - 1)))


def scatter_max(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Maximum of the rows of ``src`` [E, ...] per segment -> [N, ...] (-inf when empty)."""
    out = src.new_full((dim_size, *src.shape[1:]), float("-inf"))
    return out.scatter_reduce(0, _expand_index(index, src), src, "amax", include_self=True)


def segment_softmax(
    logits: torch.Tensor,
    index: torch.Tensor,
    num_segments: int,
    weights: torch.Tensor | None = None,
    extra_logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax of ``logits`` [E, ...] over the edges of each segment (centre atom).

    ``p_e = w_e exp(a_e) / (exp(b_n) + Σ_{e'∈n} w_e' exp(a_e'))`` where ``w`` = ``weights``
    [E] (1 if omitted) and ``b`` = ``extra_logits`` [N, ...] (a term for an extra entry
    per segment, e.g. the atom attending to itself; absent if omitted). Weights that go
    to zero remove an edge continuously. The per-segment maximum is subtracted (and
    detached; the result does not depend on it), so no exponential overflows; the
    computation runs in at least float32.

    Returns:
        ``(p [E, ...], p_extra [N, ...] or None)``; they sum to 1 per segment (when the
        denominator is not empty).
    """
    dtype = logits.dtype
    work = torch.promote_types(dtype, torch.float32)
    logits = logits.to(work)
    with torch.no_grad():
        shift = scatter_max(logits.detach(), index, num_segments)
        if extra_logits is not None:
            shift = torch.maximum(shift, extra_logits.detach().to(work))
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    num = torch.exp(logits - shift.index_select(0, index))
    if weights is not None:
        num = num * weights.to(work).view(-1, *([1] * (logits.dim() - 1)))
    denom = scatter_sum(num, index, num_segments)
    extra = None
    if extra_logits is not None:
        extra = torch.exp(extra_logits.to(work) - shift)
        denom = denom + extra
    denom = denom.clamp_min(torch.finfo(work).tiny)
    p = (num / denom.index_select(0, index)).to(dtype)
    return p, None if extra is None else (extra / denom).to(dtype)


def check_atomic_numbers(numbers: torch.Tensor, max_num_elements: int) -> None:
    """Raise ``ValueError`` when an atomic number in ``numbers`` [N] is ``>= max_num_elements``.

    The check reads tensor values, so it runs in eager mode only: under ``torch.compile``
    and ``torch.export`` it is skipped (no graph break, no data-dependent guard), and an
    out-of-range number fails in the embedding lookup instead.
    """
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return
    if numbers.numel() and int(numbers.max()) >= max_num_elements:
        raise ValueError(
            f"atomic number {int(numbers.max())} >= max_num_elements={max_num_elements}"
        )
