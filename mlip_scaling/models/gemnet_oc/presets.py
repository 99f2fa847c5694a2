"""Size presets of the GemNet-OC-style family: ``gemnet-<size>``, 886 to 11M parameters.

Ten steps (×2.5-3.5 each): 1 to 5 interaction blocks, atom embeddings 4 to 384 wide, edge
embeddings 4 to 512, triplet and quadruplet widths 2 to 64 (GemNet-OC's proportions:
triplet and quadruplet interactions much narrower than the edges), 16 Gaussians, 7
Legendre degrees for triplets and 3 per angle for quadruplets from the 18k preset up.
Cutoff 5 Å (the transformer's), quadruplets within 3.5 Å; all are conservative
(``direct_forces`` false): set ``--model-config '{"direct_forces": true}'`` for the
direct force head.
"""

from __future__ import annotations

__all__ = ["GEMNET_CUTOFF", "GEMNET_DEFAULT", "GEMNET_QUAD_CUTOFF", "GEMNET_PRESETS",
           "GEMNET_PRESET_PARAMS"]

#: cutoff (Å) of the presets
GEMNET_CUTOFF = 5.0
#: cutoff (Å) of every edge in a quadruplet: the first neighbour shell of the embedded
#: dataset's elements (2.35-2.9 Å, up to 8 % strain), 12 instead of ~42 neighbours in fcc
GEMNET_QUAD_CUTOFF = 3.5

# exact count, (blocks, atom, edge, triplet, quad, radial, spherical, quad spherical)
_LADDER: tuple[tuple[int, tuple[int, ...]], ...] = (
    (886, (1, 4, 4, 2, 2, 6, 4, 2)),
    (2234, (1, 8, 8, 4, 2, 8, 4, 2)),
    (6171, (2, 12, 12, 4, 4, 8, 5, 2)),
    (17663, (2, 20, 24, 8, 4, 12, 7, 3)),
    (47084, (3, 28, 32, 12, 8, 16, 7, 3)),
    (116660, (3, 48, 56, 16, 8, 16, 7, 3)),
    (403029, (4, 80, 96, 24, 12, 16, 7, 3)),
    (1110965, (4, 144, 160, 32, 16, 16, 7, 3)),
    (3406053, (4, 256, 288, 48, 24, 16, 7, 3)),
    (11096646, (5, 384, 512, 64, 32, 16, 7, 3)),
)


def _size(n_params: int) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if n_params >= div:
            value = n_params / div
            return f"{value:.1f}{unit}" if value < 10 else f"{round(value)}{unit}"
    return str(n_params)


def _config(shape: tuple[int, ...]) -> dict:
    blocks, atom, edge, triplet, quad, radial, spherical, quad_spherical = shape
    return {"cutoff": GEMNET_CUTOFF, "num_blocks": blocks, "atom_channels": atom,
            "edge_channels": edge, "triplet_channels": triplet, "quad_channels": quad,
            "num_radial": radial, "num_spherical": spherical,
            "num_quad_spherical": quad_spherical, "quadruplets": True,
            "quad_cutoff": GEMNET_QUAD_CUTOFF,
            "direct_forces": False, "max_num_elements": 119}


GEMNET_PRESETS: dict[str, dict] = {f"gemnet-{_size(n)}": _config(s) for n, s in _LADDER}
GEMNET_PRESET_PARAMS: dict[str, int] = {f"gemnet-{_size(n)}": n for n, _ in _LADDER}
#: preset used when only the family is named
GEMNET_DEFAULT = "gemnet-6.2k"
