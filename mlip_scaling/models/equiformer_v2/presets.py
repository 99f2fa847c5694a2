"""EquiformerV2 size presets.

* ``eqv2-S`` / ``eqv2-M`` / ``eqv2-L``: the OMat24 models of fairchem-core 1.10 (cutoff
  12 Å, 128 sphere channels, 8 heads, grid MLP feed-forward, 600 Gaussians — the number
  fairchem's code uses whatever its config says — direct force head and fairchem's rank-2
  stress head; 31,207,434 / 86,589,068 / 153,769,868 parameters). "Identical" means both:
  (1) the same parameters per component (backbone, energy, force and stress heads; checked
  by the tests), and (2) the same function: ``layer_norm_sh`` norms, a hard cutoff (no
  envelope), at most 20 neighbours with fairchem's non-strict tie rule (every edge within
  0.01 Å² of the 21st squared length is kept), fairchem's stress head and OMat24's
  ``avg_num_nodes`` / ``avg_degree``; no parity averaging (chiral, as published). A
  fairchem checkpoint imported with ``mlip-scaling import-fairchem`` into this config
  gives fairchem's energies, forces and stress to 1e-10 in float64 (tested on a tiny
  random-weight fixture made with fairchem-core 1.10.0, with the package's deterministic
  edge frame in both; fairchem's own frame is random, which moves its results slightly).
* ``eqv2-<size>``: a conservative ladder (energy head only; forces and stress by autograd),
  SO(3)-equivariant and not parity averaged (as the published models: a mirror image
  is learnt from data, not enforced), cutoff 6 Å, from 1.5k to 147M parameters in roughly
  geometric steps (×2-4). Width, depth and lmax/mmax grow together; the three largest
  are the S/M/L backbones (18x18 S² grids); the others use the minimal grids of their
  lmax/mmax (fairchem's default when no resolution is given), which cost far less on
  edges. The ladder keeps the package's choices where they are better for scaling
  studies: a smooth (C²) cutoff envelope and no neighbour cap (energies continuous as
  atoms cross the cutoff or the 20th-neighbour shell; a supercell equals its primitive
  cell), RMS norms, and conservative forces and stress. ``parity_average: true`` in
  ``--model-config`` makes a ladder model O(3)-invariant at twice the cost of a step
  (outputs averaged over the structure and its point inversion; see benchmarks/PARITY.md).
  Model files store their full config, so files trained averaged stay averaged.
* ``eqv2d-<size>`` (family ``eqv2d``): the same backbones with direct force and stress
  heads (non-conservative; no double backward in training); see ``EQV2D_PRESETS`` and
  benchmarks/EQV2_DIRECT.md for the trade.

``EQV2_PRESET_PARAMS`` holds exact counts (checked by the tests).
"""

from __future__ import annotations

__all__ = ["EQV2D_NAMES", "EQV2D_PRESETS", "EQV2D_PRESET_PARAMS", "EQV2_PRESETS",
           "EQV2_PRESET_PARAMS", "LADDER_CUTOFF", "FAIRCHEM_FUNCTION"]

#: Cutoff (Å) of the conservative ladder.
LADDER_CUTOFF = 6.0

_OMAT24_SHAPES = {"S": (8, 4, 2), "M": (10, 6, 4), "L": (20, 6, 3)}  # layers, lmax, mmax
#: OMat24 configs' normalisers of the energy sum and of the edge-degree embedding
OMAT24_AVG_NUM_NODES = 31.16592360068011
OMAT24_AVG_DEGREE = 61.94676351484548
#: The options that make an EquiformerV2 config compute fairchem's function (hard cutoff,
#: direct force head, fairchem's stress head, grid MLP, no parity averaging)
FAIRCHEM_FUNCTION = {"num_distance_basis": 600, "envelope": False, "stress_head": "fairchem",
                     "direct_forces": True, "use_grid_mlp": True, "parity_average": False}


def _omat24_config(size: str) -> dict:
    layers, lmax, mmax = _OMAT24_SHAPES[size]
    return {
        "cutoff": 12.0,
        "num_layers": layers,
        "sphere_channels": 128,
        "attn_hidden_channels": 64,
        "num_heads": 8,
        "attn_alpha_channels": 64,
        "attn_value_channels": 16,
        "ffn_hidden_channels": 128,
        "lmax": lmax,
        "mmax": mmax,
        "grid_resolution": 18,
        "edge_channels": 128,
        "max_num_elements": 96,
        "max_neighbors": 20,
        "max_neighbors_strict": False,
        "norm_type": "layer_norm_sh",
        "avg_num_nodes": OMAT24_AVG_NUM_NODES,
        "avg_degree": OMAT24_AVG_DEGREE,
        **FAIRCHEM_FUNCTION,
    }


def _ladder_config(
    layers: int,
    channels: int,
    lmax: int,
    mmax: int,
    attn_hidden: int,
    heads: int,
    alpha: int,
    value: int,
    ffn_hidden: int,
    num_basis: int,
    edge_channels: int,
    grid_resolution: int | None,
) -> dict:
    return {
        "cutoff": LADDER_CUTOFF,
        "num_layers": layers,
        "sphere_channels": channels,
        "attn_hidden_channels": attn_hidden,
        "num_heads": heads,
        "attn_alpha_channels": alpha,
        "attn_value_channels": value,
        "ffn_hidden_channels": ffn_hidden,
        "lmax": lmax,
        "mmax": mmax,
        "grid_resolution": grid_resolution,
        "num_distance_basis": num_basis,
        "edge_channels": edge_channels,
        "max_num_elements": 96,
        "max_neighbors": None,
        "direct_forces": False,
        "use_grid_mlp": True,
        "parity_average": False,
    }


# name, exact count, (layers, channels, lmax, mmax, attn_hidden, heads, alpha, value,
#                     ffn_hidden, gaussians, edge_channels, grid_resolution)
_LADDER: tuple[tuple[str, int, tuple], ...] = (
    ("eqv2-1.5k", 1499, (1, 2, 2, 1, 2, 1, 2, 2, 2, 4, 2, None)),
    ("eqv2-5.6k", 5565, (1, 6, 2, 1, 6, 1, 4, 4, 6, 8, 4, None)),
    ("eqv2-22k", 22113, (2, 10, 2, 1, 10, 2, 4, 4, 10, 16, 6, None)),
    ("eqv2-57k", 57449, (2, 16, 2, 1, 16, 2, 8, 8, 16, 32, 12, None)),
    ("eqv2-186k", 185793, (3, 24, 2, 1, 24, 4, 8, 8, 24, 32, 16, None)),
    ("eqv2-603k", 602721, (3, 32, 3, 2, 32, 4, 16, 8, 32, 64, 24, None)),
    ("eqv2-1.8M", 1831457, (4, 48, 4, 2, 32, 4, 16, 8, 48, 128, 32, None)),
    ("eqv2-5.0M", 5036289, (4, 64, 4, 2, 48, 8, 32, 12, 64, 256, 64, None)),
    ("eqv2-11M", 11019265, (6, 96, 4, 2, 48, 8, 32, 12, 96, 256, 96, None)),
    ("eqv2-28M", 27943937, (8, 128, 4, 2, 64, 8, 64, 16, 128, 600, 128, 18)),
    ("eqv2-79M", 79012609, (10, 128, 6, 4, 64, 8, 64, 16, 128, 600, 128, 18)),
    ("eqv2-147M", 146734849, (20, 128, 6, 3, 64, 8, 64, 16, 128, 600, 128, 18)),
)

_PUBLISHED = {"eqv2-S": 31_207_434, "eqv2-M": 86_589_068, "eqv2-L": 153_769_868}

EQV2_PRESETS: dict[str, dict] = {name: _ladder_config(*shape) for name, _, shape in _LADDER}
EQV2_PRESETS.update({f"eqv2-{s}": _omat24_config(s) for s in _OMAT24_SHAPES})

EQV2_PRESET_PARAMS: dict[str, int] = {name: n for name, n, _ in _LADDER}
EQV2_PRESET_PARAMS.update(_PUBLISHED)


# ---------------------------------------------------------------------------------------
# Direct-force ladder: ``eqv2d-<size>``
# ---------------------------------------------------------------------------------------
#: The direct-force ladder (family ``eqv2d``): the backbone of ``eqv2-<size>`` (the size in
#: the name is the exact total, heads included) with the direct heads of the OMat24 models, a
#: force head (one more graph attention, ``l = 1`` output) and the package's equivariant
#: rank-2 stress head. Forces and stress are predictions, not derivatives of the energy
#: (non-conservative): a training step needs no double backward. The heads add 30-65 % to
#: the parameter count (``EQV2D_PRESET_PARAMS``: exact totals).
#: direct-force preset of each backbone, named like every ladder by its exact total count
EQV2D_NAMES = {
    "eqv2-1.5k": "eqv2d-2.3k", "eqv2-5.6k": "eqv2d-9.2k", "eqv2-22k": "eqv2d-31k",
    "eqv2-57k": "eqv2d-81k", "eqv2-186k": "eqv2d-240k", "eqv2-603k": "eqv2d-788k",
    "eqv2-1.8M": "eqv2d-2.3M", "eqv2-5.0M": "eqv2d-6.2M", "eqv2-11M": "eqv2d-13M",
    "eqv2-28M": "eqv2d-31M", "eqv2-79M": "eqv2d-87M", "eqv2-147M": "eqv2d-154M",
}
EQV2D_PRESETS: dict[str, dict] = {
    EQV2D_NAMES[name]: {
        **_ladder_config(*shape), "direct_forces": True, "stress_head": "equivariant"}
    for name, _, shape in _LADDER
}
#: exact totals; eqv2d-31M/79M/147M equal eqv2-S/M/L's counts (same backbones and heads)
EQV2D_PRESET_PARAMS: dict[str, int] = {
    "eqv2d-2.3k": 2318, "eqv2d-9.2k": 9160, "eqv2d-31k": 31084, "eqv2d-81k": 81304,
    "eqv2d-240k": 240296, "eqv2d-788k": 787897, "eqv2d-2.3M": 2255946,
    "eqv2d-6.2M": 6213802, "eqv2d-13M": 12719338, "eqv2d-31M": 31207434,
    "eqv2d-87M": 86589068, "eqv2d-154M": 153769868,
}
