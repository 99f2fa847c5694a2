"""Graphs and interaction indices of the GemNet-OC family (fairchem's ``gemnet_oc`` rules).

Edges follow the package's convention: ``index[0]`` the centre atom ``i`` (where messages
are aggregated), ``index[1]`` the neighbour ``j``, ``shift`` the integer cell shift of
``j``'s image and ``vector = r_j + shift @ cell - r_i`` (Å). All functions are vectorised
over edges (no Python loops over atoms); index tensors depend on the edge list only.

Four graphs are used: the atom-to-atom graph (all edges within ``cutoff``, capped at
``max_neighbors_aint`` with fairchem's rule on squared distances), and the main, the
atom-edge and the quadruplet graphs taken from it with shorter cutoffs and caps (fairchem's
rule on distances). The main graph is then made symmetric as fairchem does: the edges with
``j < i`` (for ``j == i`` the images with a lexicographically positive shift) are kept and
their reverses appended, so that ``swap`` (the reverse of every edge) is a fixed permutation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mlip_scaling.models.equiformer_v2.model import _by_centre_then

__all__ = ["Edges", "cap_neighbors", "pair_edges", "quadruplets", "symmetrize", "triplets"]

#: fairchem's tolerance (Å on distances, Å² on squared distances) of non-strict caps
TIE_TOLERANCE = 0.01


@dataclass
class Edges:
    """A directed edge list: ``index`` [2, E], ``shift`` [E, 3] (long), ``vector`` [E, 3]
    (Å), ``length`` [E] (Å)."""

    index: torch.Tensor
    shift: torch.Tensor
    vector: torch.Tensor
    length: torch.Tensor

    def select(self, keep: torch.Tensor) -> Edges:
        """The edges where the bool mask ``keep`` [E] is true."""
        return Edges(self.index[:, keep], self.shift[keep], self.vector[keep], self.length[keep])

    @property
    def unit(self) -> torch.Tensor:
        """[E, 3] unit vectors from the centre to the neighbour."""
        return self.vector / self.length.unsqueeze(-1)


def cap_neighbors(
    edges: Edges, k: int | None, num_atoms: int, strict: bool, squared: bool
) -> Edges:
    """At most ``k`` nearest neighbours per centre (None: all), by fairchem's rule.

    ``strict``: exactly the ``k`` shortest (exact ties broken by edge order). Otherwise,
    for a centre with more than ``k`` edges, every edge whose key is at most the
    ``(k+1)``-th smallest key plus :data:`TIE_TOLERANCE`; the key is the squared length
    (``squared``, as fairchem's neighbour search) or the length (its sub-graphs).
    """
    if k is None or k <= 0:
        return edges
    key = edges.length.detach()
    key = key * key if squared else key
    centre = edges.index[0]
    order, counts, starts = _by_centre_then(key, centre, num_atoms)
    if strict:
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.shape[0], device=order.device) - starts[centre[order]]
        return edges.select(rank < k)
    threshold = torch.full((num_atoms,), torch.inf, dtype=key.dtype, device=key.device)
    more = counts > k
    threshold[more] = key[order[starts[more] + k]] + TIE_TOLERANCE
    return edges.select(key <= threshold[centre])


def symmetrize(edges: Edges) -> tuple[Edges, torch.Tensor]:
    """fairchem's symmetric main graph and ``swap`` [E'] (the reverse of every edge)."""
    i, j = edges.index
    s = edges.shift
    positive = (
        (s[:, 0] > 0)
        | ((s[:, 0] == 0) & (s[:, 1] > 0))
        | ((s[:, 0] == 0) & (s[:, 1] == 0) & (s[:, 2] > 0))
    )
    half = edges.select((j < i) | ((j == i) & positive))
    full = Edges(
        torch.cat([half.index, half.index.flip(0)], 1),
        torch.cat([half.shift, -half.shift]),
        torch.cat([half.vector, -half.vector]),
        torch.cat([half.length, half.length]),
    )
    n = half.length.shape[0]
    ar = torch.arange(n, device=i.device)
    return full, torch.cat([ar + n, ar])


def pair_edges(
    key_out: torch.Tensor, key_in: torch.Tensor, num_keys: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs ``(o, e)`` with ``key_in[e] == key_out[o]``: ``(out, in)`` [P] indices,
    sorted by ``out``."""
    order = torch.argsort(key_in, stable=True)
    counts = torch.bincount(key_in, minlength=num_keys)
    start = torch.cumsum(counts, 0) - counts
    degree = counts[key_out]
    out = torch.repeat_interleave(torch.arange(key_out.shape[0], device=key_out.device), degree)
    first = torch.repeat_interleave(torch.cumsum(degree, 0) - degree, degree)
    offset = torch.arange(out.shape[0], device=key_out.device) - first
    return out, order[start[key_out[out]] + offset]


def _keep(
    pairs: tuple[torch.Tensor, torch.Tensor], drop: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return pairs[0][~drop], pairs[1][~drop]


def triplets(out: Edges, inp: Edges, num_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges ``e`` of ``inp`` with the centre of edge ``o`` of ``out``, except the same
    neighbour image (fairchem's ``get_triplets`` / ``get_mixed_triplets``) -> ``(o, e)``."""
    o, e = pair_edges(out.index[0], inp.index[0], num_atoms)
    same = (out.index[1][o] == inp.index[1][e]) & (out.shift[o] == inp.shift[e]).all(-1)
    return _keep((o, e), same)


def quadruplets(main: Edges, qint: Edges, num_atoms: int) -> dict[str, torch.Tensor]:
    """fairchem's quadruplets ``c -> a <- b <- d``: main edge ``o = (a, c)``, quadruplet
    edge ``q = (a, b)``, main edge ``d = (b, d)``, with ``b`` not the image of ``c`` and
    ``d`` neither the image of ``a`` behind ``q`` nor that of ``c``.

    Returns ``in_q``, ``in_d`` [T_in] (the in-triplets ``(q, d)``), ``out_o``, ``out_q``
    [T_out] (the out-triplets ``(o, q)``), ``quad_out`` (main edge ``o``), ``quad_in``
    (in-triplet) and ``quad_trip`` (out-triplet) [Q].
    """
    q, d = pair_edges(qint.index[1], main.index[0], num_atoms)  # d centred on b
    back = (main.index[1][d] == qint.index[0][q]) & ((qint.shift[q] + main.shift[d]) == 0).all(-1)
    in_q, in_d = _keep((q, d), back)
    out_o, out_q = triplets(main, qint, num_atoms)
    trip, tin = pair_edges(out_q, in_q, qint.length.shape[0])
    o, d_edge = out_o[trip], in_d[tin]
    same = (main.index[1][o] == main.index[1][d_edge]) & (
        (main.shift[d_edge] + qint.shift[out_q[trip]]) == main.shift[o]
    ).all(-1)
    trip, tin = _keep((trip, tin), same)
    return {
        "in_q": in_q,
        "in_d": in_d,
        "out_o": out_o,
        "out_q": out_q,
        "quad_out": out_o[trip],
        "quad_in": tin,
        "quad_trip": trip,
    }
