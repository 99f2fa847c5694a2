"""Size presets of the GemNet-OC family: ``gemnet-<size>``, 1.3k to 21M parameters.

Ten steps (×2.5-3.7 each) of fairchem's GemNet-OC with all four optional interactions:
1 to 4 interaction blocks, atom embeddings 4 to 256 wide, edges 4 to 384, triplet,
quadruplet and atom-pair widths 2 to 64 (GemNet-OC's proportions: the interactions much
narrower than the edges), basis embeddings 2 to 32, 2 to 7 spherical degrees, 4 to 128
Gaussians; from 1.1M on the OC20 configuration's residual depths (2 before and after the
skip, 3 atom and output layers, 2 atom-embedding and global layers), below one of each.
Cutoffs: 5 Å (neighbour list, atom-to-atom and atom-edge graphs), 4 Å for the edge
embeddings and triplets, 3.5 Å for the quadruplets; no neighbour caps (every edge enters
smoothly). All are conservative (``direct_forces`` false): set ``--model-config
'{"direct_forces": true}'`` for the direct force head.
"""

from __future__ import annotations

from mlip_scaling.models.size_names import format_size

__all__ = [
    "GEMNET_CUTOFF",
    "GEMNET_DEFAULT",
    "GEMNET_QUAD_CUTOFF",
    "GEMNET_PRESETS",
    "GEMNET_PRESET_PARAMS",
]

#: cutoff (Å) of the presets: the neighbour list, atom-to-atom and atom-edge graphs
GEMNET_CUTOFF = 5.0
#: cutoff (Å) of the edge embeddings and triplets (fairchem's ``cutoff``)
GEMNET_MAIN_CUTOFF = 4.0
#: cutoff (Å) of the quadruplet edges: the first neighbour shell of the embedded dataset's
#: elements (2.35-2.9 Å, up to 8 % strain)
GEMNET_QUAD_CUTOFF = 3.5

_SHALLOW = {
    "num_before_skip": 1,
    "num_after_skip": 1,
    "num_concat": 1,
    "num_atom": 1,
    "num_output_afteratom": 1,
    "num_atom_emb_layers": 0,
    "num_global_out_layers": 1,
}
_DEEP = {
    "num_before_skip": 2,
    "num_after_skip": 2,
    "num_concat": 1,
    "num_atom": 3,
    "num_output_afteratom": 3,
    "num_atom_emb_layers": 2,
    "num_global_out_layers": 2,
}

# exact count, (blocks, atom, edge, trip, quad, aint, rbf, cbf, sbf, spherical, radial, deep)
_LADDER: tuple[tuple[int, tuple[int, ...]], ...] = (
    (1328, (1, 4, 4, 2, 2, 2, 2, 2, 2, 2, 4, 0)),
    (4464, (1, 8, 8, 4, 2, 4, 4, 4, 4, 3, 6, 0)),
    (12308, (2, 12, 12, 4, 4, 4, 4, 4, 4, 3, 8, 0)),
    (35200, (2, 16, 20, 8, 4, 8, 8, 8, 8, 5, 12, 0)),
    (108008, (3, 24, 32, 12, 8, 12, 8, 8, 8, 6, 16, 0)),
    (312024, (3, 40, 56, 16, 8, 16, 12, 12, 16, 7, 32, 0)),
    (1141120, (3, 64, 96, 24, 12, 24, 16, 16, 16, 7, 32, 1)),
    (3242912, (4, 96, 144, 32, 16, 32, 16, 16, 32, 7, 64, 1)),
    (8100448, (4, 160, 224, 48, 24, 48, 16, 16, 32, 7, 128, 1)),
    (20799232, (4, 256, 384, 64, 32, 64, 16, 16, 32, 7, 128, 1)),
)


def _config(shape: tuple[int, ...]) -> dict:
    blocks, atom, edge, trip, quad, aint, rbf, cbf, sbf, spherical, radial, deep = shape
    return {
        "cutoff": GEMNET_CUTOFF,
        "cutoff_main": GEMNET_MAIN_CUTOFF,
        "cutoff_qint": GEMNET_QUAD_CUTOFF,
        "cutoff_aeaint": GEMNET_CUTOFF,
        "num_blocks": blocks,
        "emb_size_atom": atom,
        "emb_size_edge": edge,
        "emb_size_trip_in": trip,
        "emb_size_trip_out": trip,
        "emb_size_quad_in": quad,
        "emb_size_quad_out": quad,
        "emb_size_aint_in": aint,
        "emb_size_aint_out": aint,
        "emb_size_rbf": rbf,
        "emb_size_cbf": cbf,
        "emb_size_sbf": sbf,
        "num_spherical": spherical,
        "num_radial": radial,
        **(_DEEP if deep else _SHALLOW),
        "sbf": "legendre_outer",
        "direct_forces": False,
        "num_elements": 118,
    }


GEMNET_PRESETS: dict[str, dict] = {f"gemnet-{format_size(n)}": _config(s) for n, s in _LADDER}
GEMNET_PRESET_PARAMS: dict[str, int] = {f"gemnet-{format_size(n)}": n for n, _ in _LADDER}
#: preset used when only the family is named
GEMNET_DEFAULT = "gemnet-12k"
