"""EquiformerV2 size presets.

* ``eqv2-S`` / ``eqv2-M`` / ``eqv2-L``: the OMat24 models (cutoff 12 Å, 128 sphere channels,
  8 heads, grid MLP feed-forward, 600 Gaussians — the number fairchem's code uses whatever
  its config says) with the direct force and rank-2 stress heads, as published
  (31,207,434 / 86,589,068 / 153,769,868 parameters, identical per component to
  fairchem-core 1.10.0), without parity averaging (chiral, as published). No neighbour
  cap (OMat24 used 20, which makes energies depend on the supercell).
* ``eqv2-<size>``: a conservative ladder (energy head only; forces and stress by autograd),
  parity-averaged (O(3)-invariant), cutoff 6 Å, from 1.5k to 147M parameters in roughly
  geometric steps (×2-4). Width, depth and lmax/mmax grow together; the three largest
  are the S/M/L backbones (18x18 S² grids); the others use the minimal grids of their
  lmax/mmax (fairchem's default when no resolution is given), which cost far less on
  edges.

``EQV2_PRESET_PARAMS`` holds exact counts (checked by the tests).
"""

from __future__ import annotations

__all__ = ["EQV2_PRESETS", "EQV2_PRESET_PARAMS", "LADDER_CUTOFF"]

#: Cutoff (Å) of the conservative ladder.
LADDER_CUTOFF = 6.0

_OMAT24_SHAPES = {"S": (8, 4, 2), "M": (10, 6, 4), "L": (20, 6, 3)}  # layers, lmax, mmax


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
        "num_distance_basis": 600,
        "edge_channels": 128,
        "max_num_elements": 96,
        "max_neighbors": None,
        "direct_forces": True,
        "use_grid_mlp": True,
        "parity_average": False,
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
        "parity_average": True,
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
