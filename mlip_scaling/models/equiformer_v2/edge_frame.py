"""Edge-aligned frames: a rotation per edge that takes the edge direction to ``+y``.

The rotation is deterministic and smooth in the edge direction everywhere except inside a
tiny cone (``1e-4`` rad) around one fixed, irrational direction ``SINGULAR_DIRECTION``,
where a fallback keeps it well defined. Edges along the Cartesian axes, lattice vectors
or any rational crystal direction are far from it. Gradients flow through the frame, so
forces and stress from autograd are those of the computed energy.
"""

from __future__ import annotations

import torch

__all__ = ["SINGULAR_DIRECTION", "edge_rotation"]

#: The one direction where the frame field is not smooth (normalised in use; irrational).
SINGULAR_DIRECTION = (0.3141592653589793, -0.8660254037844386, 0.3890560989306504)


#: ``Q`` per (dtype, device); a plain dict so that compiled and exported forwards read it as a
#: constant
_PRE_ROTATIONS: dict[tuple, torch.Tensor] = {}


def _pre_rotation(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[3, 3] fixed rotation Q with ``Q s = -y`` for ``s = SINGULAR_DIRECTION`` (built once
    in float64 per dtype and device)."""
    key = (dtype, torch.device(device))
    if key not in _PRE_ROTATIONS:
        _PRE_ROTATIONS[key] = _exact_pre_rotation().to(dtype=dtype, device=device)
    return _PRE_ROTATIONS[key]


def _exact_pre_rotation() -> torch.Tensor:
    s = torch.tensor(SINGULAR_DIRECTION, dtype=torch.float64, device="cpu")
    s = s / s.norm()
    target = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64, device="cpu")
    k = torch.linalg.cross(s, target)
    c = torch.dot(s, target)
    kx = _skew(k[None])[0]
    return torch.eye(3, dtype=torch.float64, device="cpu") + kx + kx @ kx / (1.0 + c)


def _skew(k: torch.Tensor) -> torch.Tensor:
    """[E, 3] -> [E, 3, 3] cross-product matrices ``[k]_x``."""
    zero = torch.zeros_like(k[:, 0])
    return torch.stack(
        [
            torch.stack([zero, -k[:, 2], k[:, 1]], dim=-1),
            torch.stack([k[:, 2], zero, -k[:, 0]], dim=-1),
            torch.stack([-k[:, 1], k[:, 0], zero], dim=-1),
        ],
        dim=-2,
    )


def edge_rotation(edge_vectors: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """[E, 3] edge vectors (Å) -> [E, 3, 3] rotations ``R`` with ``R v̂ = ŷ``.

    ``R = A(Q v̂) Q`` where ``Q`` is a fixed rotation and ``A(u)`` is the shortest-arc
    rotation from ``u`` to ``ŷ`` (Rodrigues: ``I + [k]_x + [k]_x^2 / (1 + u_y)`` with
    ``k = u × ŷ = (-u_z, 0, u_x)``, written out entry by entry). ``A`` is singular only for
    ``u = -ŷ``, i.e. for edges along ``SINGULAR_DIRECTION``; there a rotation by π about
    ``x`` (which also maps ``-ŷ`` to ``ŷ``) is used.
    """
    length = torch.linalg.vector_norm(edge_vectors, dim=-1, keepdim=True)
    q = _pre_rotation(edge_vectors.dtype, edge_vectors.device)
    u = (edge_vectors / length.clamp_min(1e-12)) @ q.T
    ux, c, uz = u.unbind(-1)
    near = (1.0 + c) < eps
    inv = 1.0 / torch.where(near, torch.ones_like(c), 1.0 + c)
    s = ux * ux + uz * uz  # |k|^2
    xz = -ux * uz * inv
    a = torch.stack(
        [1.0 + (uz * uz - s) * inv, -ux, xz, ux, 1.0 - s * inv, uz, xz, -uz,
         1.0 + (ux * ux - s) * inv],
        dim=-1,
    )
    flip = torch.tensor([1.0, 0, 0, 0, -1.0, 0, 0, 0, -1.0], dtype=u.dtype, device=u.device)
    a = torch.where(near[:, None], flip.expand_as(a), a)
    return (a.reshape(-1, 3) @ q).reshape(-1, 3, 3)
