"""Graph helpers of the GemNet-OC family: triplets, reverse edges, angular bases.

All are vectorised over edges and triplets (no Python loops over atoms); the index
tensors depend on the edge list only, the bases are differentiable in the edge vectors.
"""

from __future__ import annotations

import torch

__all__ = ["build_triplets", "legendre", "reverse_edges"]

_SHIFT_BITS = 7  # |cell shift| < 64 per component in the reverse-edge key


def build_triplets(centre: torch.Tensor, num_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordered pairs of distinct edges with the same centre atom.

    ``centre`` [E] -> ``(t_out, t_in)`` [T] edge indices: for every edge ``e = (i, j)``
    all edges ``(i, k)`` with ``k`` another neighbour (or another image of ``j``).
    """
    num_edges = centre.shape[0]
    order = torch.argsort(centre, stable=True)
    counts = torch.bincount(centre, minlength=num_atoms)
    start = torch.cumsum(counts, 0) - counts
    degree = counts[centre]
    t_out = torch.repeat_interleave(torch.arange(num_edges, device=centre.device), degree)
    first = torch.repeat_interleave(torch.cumsum(degree, 0) - degree, degree)
    offset = torch.arange(t_out.shape[0], device=centre.device) - first
    t_in = order[start[centre[t_out]] + offset]
    keep = t_in != t_out
    return t_out[keep], t_in[keep]


def reverse_edges(edge_index: torch.Tensor, shifts: torch.Tensor, num_atoms: int) -> torch.Tensor:
    """Index [E] of the reverse of every edge: ``(i, j, s) -> (j, i, -s)``.

    ``edge_index`` [2, E], ``shifts`` [E, 3] integer cell shifts (as floats). ValueError when
    the list is not symmetric (a full neighbour list always is; checked in eager mode).
    """
    s = shifts.detach().round().long()
    checks = not (torch.compiler.is_compiling() or torch.compiler.is_exporting())
    if checks and s.numel() and int(s.abs().max()) >= 2 ** (_SHIFT_BITS - 1):
        raise ValueError("cell shifts of 64 or more cells are not supported")

    def key(i: torch.Tensor, j: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        code = torch.zeros_like(i)
        for c in range(3):
            code = (code << _SHIFT_BITS) + shift[:, c] + 2 ** (_SHIFT_BITS - 1)
        return ((i * num_atoms + j) << (3 * _SHIFT_BITS)) + code

    forward = key(edge_index[0], edge_index[1], s)
    backward = key(edge_index[1], edge_index[0], -s)
    a, b = torch.argsort(forward), torch.argsort(backward)
    if checks and not torch.equal(forward[a], backward[b]):
        raise ValueError("the neighbour list is not symmetric (an edge lacks its reverse)")
    reverse = torch.empty_like(a)
    reverse[b] = a
    return reverse


def legendre(x: torch.Tensor, num: int) -> torch.Tensor:
    """Legendre polynomials ``P_0..P_{num-1}`` of ``x`` [T] -> [T, num] (recurrence)."""
    out = [torch.ones_like(x), x]
    for n in range(1, num - 1):
        out.append(((2 * n + 1) * x * out[n] - n * out[n - 1]) / (n + 1))
    return torch.stack(out[:num], dim=-1)
