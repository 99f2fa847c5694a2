"""EquiformerV2 ladders at a fixed degree, for families ordered by symmetry.

* ``eqv2-l1-<size>``: low-order equivariant (lmax = mmax = 1: scalars and vectors only);
* ``eqv2-l3-<size>``: higher-order equivariant (lmax 3, mmax 2).

Both are registered as their own families (``eqv2-l1``, ``eqv2-l3``: the same model class
as ``eqv2``), so a report fits each ladder separately. The cutoff is the transformers' 5 Å;
the rest is the conservative ``eqv2-<size>`` ladder's recipe (smooth envelope, no neighbour
cap, energy head only, forces and stress by autograd, minimal S² grids). Five sizes each,
×2.5-3.7 per step, over the range the transformer ladders cover at their small end.
``LMAX_PRESET_PARAMS`` holds exact counts (checked by the tests).
"""

from __future__ import annotations

from mlip_scaling.models.equiformer_v2.presets import _ladder_config

__all__ = ["LMAX_FAMILIES", "LMAX_PRESETS", "LMAX_PRESET_PARAMS", "LMAX_DEFAULTS", "CUTOFF"]

#: Cutoff (Å): the transformer ladders' (same neighbourhoods, so that the symmetry built in is
#: what differs between the families), 0.6x the edges of the eqv2 ladder's 6 Å.
CUTOFF = 5.0

#: family -> (lmax, mmax)
LMAX_FAMILIES: dict[str, tuple[int, int]] = {"eqv2-l1": (1, 1), "eqv2-l3": (3, 2)}

# name, family, exact count, (layers, channels, attn_hidden, heads, alpha, value, ffn_hidden,
#                       gaussians, edge_channels)
_SHAPES: tuple[tuple[str, str, int, tuple[int, ...]], ...] = (
    ("eqv2-l1-1.3k", "eqv2-l1", 1293, (1, 2, 2, 1, 2, 2, 2, 4, 2)),
    ("eqv2-l1-4.1k", "eqv2-l1", 4073, (1, 6, 6, 1, 4, 4, 6, 8, 4)),
    ("eqv2-l1-13k", "eqv2-l1", 12633, (2, 8, 8, 2, 4, 4, 8, 8, 8)),
    ("eqv2-l1-34k", "eqv2-l1", 34105, (2, 16, 16, 2, 8, 8, 16, 16, 12)),
    ("eqv2-l1-125k", "eqv2-l1", 125129, (3, 28, 28, 4, 8, 8, 28, 32, 16)),
    ("eqv2-l3-1.9k", "eqv2-l3", 1897, (1, 2, 2, 1, 2, 2, 2, 4, 2)),
    ("eqv2-l3-5.4k", "eqv2-l3", 5377, (1, 4, 4, 1, 4, 4, 4, 8, 4)),
    ("eqv2-l3-17k", "eqv2-l3", 16953, (1, 8, 8, 2, 4, 4, 8, 8, 8)),
    ("eqv2-l3-53k", "eqv2-l3", 53357, (2, 12, 12, 2, 4, 4, 12, 16, 8)),
    ("eqv2-l3-150k", "eqv2-l3", 150261, (2, 20, 20, 2, 8, 8, 20, 16, 16)),
)


def _config(family: str, shape: tuple[int, ...]) -> dict:
    layers, channels, attn_hidden, heads, alpha, value, ffn, gaussians, edge = shape
    lmax, mmax = LMAX_FAMILIES[family]
    config = _ladder_config(layers, channels, lmax, mmax, attn_hidden, heads, alpha, value,
                            ffn, gaussians, edge, None)
    return {**config, "cutoff": CUTOFF}


#: preset name -> (family, config)
LMAX_PRESETS: dict[str, tuple[str, dict]] = {
    name: (family, _config(family, shape)) for name, family, _, shape in _SHAPES}
LMAX_PRESET_PARAMS: dict[str, int] = {name: n for name, _, n, _ in _SHAPES}
#: the preset used when only the family is named
LMAX_DEFAULTS: dict[str, str] = {"eqv2-l1": "eqv2-l1-4.1k", "eqv2-l3": "eqv2-l3-5.4k"}
