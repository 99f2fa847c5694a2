"""Size presets of the Behler-Parrinello family: ``bpnn-<size>``, 1.2k to 2.1M parameters.

Ten steps (×2.1-2.6 each) by width and depth of the per-element networks (1 to 4 hidden
layers of 12 to 272), with the descriptor growing in three tiers (10, 40 and 144 symmetry
functions per atom). Every preset knows the eight elements of the embedded dataset (Al, Si,
Ni, Cu, Pd, Ag, Pt, Au); other data need ``--model-config '{"elements": "..."}'`` (one
network per element, so the size changes with their number).
"""

from __future__ import annotations

from mlip_scaling.models.size_names import format_size

__all__ = ["BPNN_CUTOFF", "BPNN_DEFAULT", "BPNN_ELEMENTS", "BPNN_PRESETS", "BPNN_PRESET_PARAMS"]

#: cutoff (Å) of the presets, the transformer's
BPNN_CUTOFF = 5.0
#: the embedded dataset's elements
BPNN_ELEMENTS = "13,14,28,29,46,47,78,79"

#: descriptor tiers: (num_radial, num_angular_radial, num_zeta, chemical_channels)
_TIERS = {"s": (6, 1, 2, 1), "m": (8, 2, 3, 2), "l": (12, 3, 4, 4)}

# exact count, (descriptor tier, hidden_channels, num_layers)
_LADDER: tuple[tuple[int, tuple[str, int, int]], ...] = (
    (1168, ("s", 12, 1)),
    (2416, ("s", 12, 2)),
    (5304, ("m", 12, 2)),
    (12888, ("m", 24, 2)),
    (33432, ("m", 36, 3)),
    (78744, ("m", 60, 3)),
    (182440, ("l", 76, 3)),
    (435112, ("l", 132, 3)),
    (992200, ("l", 180, 4)),
    (2099880, ("l", 272, 4)),
)


def _config(tier: str, hidden: int, layers: int) -> dict:
    radial, angular, zeta, chemical = _TIERS[tier]
    return {"cutoff": BPNN_CUTOFF, "elements": BPNN_ELEMENTS, "hidden_channels": hidden,
            "num_layers": layers, "num_radial": radial, "num_angular_radial": angular,
            "num_zeta": zeta, "chemical_channels": chemical, "activation": "silu",
            "envelope": "polynomial"}


BPNN_PRESETS: dict[str, dict] = {f"bpnn-{format_size(n)}": _config(*shape) for n, shape in _LADDER}
BPNN_PRESET_PARAMS: dict[str, int] = {f"bpnn-{format_size(n)}": n for n, _ in _LADDER}
#: preset used when only the family is named
BPNN_DEFAULT = "bpnn-5.3k"
