"""Size presets of every model family, named by their exact parameter counts.

* ``transformer-<size>``: the invariant neighbour-attention transformer
  (:mod:`mlip_scaling.models.transformer`), cutoff 5 Å, 13 steps from 1.2k to 153M
  parameters (×2.5-3.2 per step). Width grows with depth: 1-2 layers at the bottom,
  12 layers of width 384-1024 at the top; the feed-forward width is 2× (up to 1.1M)
  then 3-4× the token width.
* ``transformer-vec-<size>``: the same transformer shapes with ``direction_features`` (edge
  features see the lab-frame components of ``r̂_ij``): translation and permutation invariant,
  periodic and conservative, but **not rotation invariant** — the unconstrained family of the
  symmetry comparison that, unlike ``transformer-seed``, sees periodic images.
* ``transformer-m-<size>``: the same transformer shapes with the neighbour-moment sub-layer
  (``moment_channels`` = half the token width, order 2: three-body terms): invariant with
  angular information, the control that separates symmetry from angular resolution.
* ``transformer-seed-<size>``: the seed paper's non-invariant transformer
  (:mod:`mlip_scaling.models.transformer_seed`), 9 steps from 2.2k to 1.2M like the paper's
  2.3k-1.2M ladder; FFN 4× the token width.
* ``eqv2-<size>`` and ``eqv2-S/M/L``: :mod:`mlip_scaling.models.equiformer_v2.presets`.
* ``eqv2-l1-<size>`` and ``eqv2-l3-<size>``: EquiformerV2 at a fixed degree (families of
  their own), :mod:`mlip_scaling.models.equiformer_v2.lmax_ladders`.
* ``eqv2d-<size>`` (family ``eqv2d``): the eqv2 ladder's backbones with direct force and
  stress heads (named by the exact total, heads included, like every ladder).
* ``bpnn-<size>``: Behler-Parrinello networks, :mod:`mlip_scaling.models.bpnn.presets`.
* ``gemnet-<size>``: GemNet-OC models (fairchem's ``gemnet_oc`` function),
  :mod:`mlip_scaling.models.gemnet_oc.presets`.

``PRESET_PARAMS`` holds exact trainable-parameter counts (checked by the tests);
``DEFAULT_PRESET`` maps a family to the preset used when only the family is named.
"""

from __future__ import annotations

from mlip_scaling.models.equiformer_v2.lmax_ladders import (
    LMAX_DEFAULTS,
    LMAX_PRESET_PARAMS,
    LMAX_PRESETS,
)
from mlip_scaling.models.equiformer_v2.presets import (
    EQV2_PRESET_PARAMS,
    EQV2_PRESETS,
    EQV2D_PRESET_PARAMS,  # direct-force ladder
    EQV2D_PRESETS,
)
from mlip_scaling.models.size_names import format_size

__all__ = ["DEFAULT_PRESET", "PRESETS", "PRESET_PARAMS", "TRANSFORMER_CUTOFF", "format_size"]

#: Cutoff (Å) of the transformer presets (the seed transformer ignores it; its data
#: pipeline still builds neighbour lists with it).
TRANSFORMER_CUTOFF = 5.0


# exact count, (num_layers, hidden_channels, num_heads, ffn_hidden, num_radial)
_TRANSFORMER: tuple[tuple[int, tuple[int, int, int, int, int]], ...] = (
    (1164, (1, 6, 1, 12, 4)),
    (2325, (1, 10, 2, 20, 6)),
    (6997, (2, 16, 2, 32, 8)),
    (17965, (2, 28, 4, 56, 8)),
    (56561, (3, 44, 4, 88, 8)),
    (148305, (4, 64, 4, 128, 8)),
    (399445, (5, 96, 4, 192, 8)),
    (1055137, (6, 144, 8, 288, 12)),
    (3055233, (8, 192, 8, 576, 16)),
    (8151201, (8, 288, 8, 1152, 16)),
    (21568225, (12, 384, 8, 1536, 16)),
    (59703161, (12, 640, 10, 2560, 16)),
    (152541377, (12, 1024, 16, 4096, 16)),
)

# exact count, (embedding_dim, num_layers, num_heads)
_SEED: tuple[tuple[int, tuple[int, int, int]], ...] = (
    (2191, (6, 1, 1)),
    (5845, (13, 1, 2)),
    (13653, (17, 2, 2)),
    (32421, (29, 2, 4)),
    (68973, (37, 3, 4)),
    (170005, (53, 4, 4)),
    (340933, (77, 4, 4)),
    (812213, (109, 5, 4)),
    (1191965, (133, 5, 4)),
)


def _transformer_config(shape: tuple[int, int, int, int, int]) -> dict:
    layers, hidden, heads, ffn, radial = shape
    return {
        "cutoff": TRANSFORMER_CUTOFF,
        "num_layers": layers,
        "hidden_channels": hidden,
        "num_heads": heads,
        "ffn_hidden": ffn,
        "num_radial": radial,
        "max_num_elements": 119,
        "envelope": "polynomial",  # "cosine" fits forces faster (benchmarks/FORCES.md)
        "species_radial": False,
    }


#: exact counts of the ``transformer-vec`` ladder (the shapes of ``_TRANSFORMER``, in order;
#: the direction features widen each attention's edge projection from R to 4R inputs)
_VEC_COUNTS = (1248, 2541, 7861, 19501, 60017, 154833, 411445, 1087969, 3132033, 8264865,
               21794017, 60077561, 153140417)

#: exact counts of the ``transformer-m`` ladder (the shapes of ``_TRANSFORMER``, in order)
_MOMENT_COUNTS = (1344, 2775, 9109, 23677, 76361, 202065, 546325, 1449121, 3986049,
                  10210977, 27014881, 74679161, 190658753)


def _seed_config(shape: tuple[int, int, int]) -> dict:
    dim, layers, heads = shape
    return {
        "cutoff": TRANSFORMER_CUTOFF,
        "embedding_dim": dim,
        "num_layers": layers,
        "num_heads": heads,
        "ffn_multiplier": 4,
        "max_num_elements": 119,
    }


PRESETS: dict[str, tuple[str, dict]] = {}
PRESET_PARAMS: dict[str, int] = {}
for _n, _shape in _TRANSFORMER:
    PRESETS[f"transformer-{format_size(_n)}"] = ("transformer", _transformer_config(_shape))
    PRESET_PARAMS[f"transformer-{format_size(_n)}"] = _n
for _n, (_, _shape) in zip(_VEC_COUNTS, _TRANSFORMER, strict=True):
    PRESETS[f"transformer-vec-{format_size(_n)}"] = (
        "transformer-vec", {**_transformer_config(_shape), "direction_features": True})
    PRESET_PARAMS[f"transformer-vec-{format_size(_n)}"] = _n
for _n, (_, _shape) in zip(_MOMENT_COUNTS, _TRANSFORMER, strict=True):
    PRESETS[f"transformer-m-{format_size(_n)}"] = ("transformer-m", {
        **_transformer_config(_shape), "moment_channels": max(2, _shape[1] // 2),
        "moment_order": 2})
    PRESET_PARAMS[f"transformer-m-{format_size(_n)}"] = _n
for _n, _shape in _SEED:
    PRESETS[f"transformer-seed-{format_size(_n)}"] = ("transformer-seed", _seed_config(_shape))
    PRESET_PARAMS[f"transformer-seed-{format_size(_n)}"] = _n
for _name, _config in EQV2_PRESETS.items():
    PRESETS[_name] = ("eqv2", dict(_config))
PRESET_PARAMS.update(EQV2_PRESET_PARAMS)
# --- fixed-degree EquiformerV2 ladders (eqv2-l1-*, eqv2-l3-*) -------------------------
PRESETS.update(LMAX_PRESETS)
PRESET_PARAMS.update(LMAX_PRESET_PARAMS)
# --- end of the fixed-degree ladders --------------------------------------------------

# ---- direct-force EquiformerV2 ladder (family "eqv2d") ----
for _name, _config in EQV2D_PRESETS.items():
    PRESETS[_name] = ("eqv2d", dict(_config))
PRESET_PARAMS.update(EQV2D_PRESET_PARAMS)
# ---- end of the direct-force ladder ----

#: Preset used when only a family is named (small enough to train on a laptop CPU).
DEFAULT_PRESET: dict[str, str] = {
    "transformer": "transformer-2.3k",
    "transformer-seed": "transformer-seed-69k",
    "transformer-vec": "transformer-vec-2.5k",
    "transformer-m": "transformer-m-2.8k",
    "eqv2": "eqv2-5.6k",
    **LMAX_DEFAULTS,  # fixed-degree EquiformerV2 ladders
    "eqv2d": "eqv2d-9.2k",  # direct-force ladder
}

# --- issue #25 families: presets and defaults ------------------------------------------
from mlip_scaling.models.bpnn.presets import (  # noqa: E402
    BPNN_DEFAULT,
    BPNN_PRESET_PARAMS,
    BPNN_PRESETS,
)
from mlip_scaling.models.gemnet_oc.presets import (  # noqa: E402
    GEMNET_DEFAULT,
    GEMNET_PRESET_PARAMS,
    GEMNET_PRESETS,
)

for _name, _config in BPNN_PRESETS.items():
    PRESETS[_name] = ("bpnn", dict(_config))
PRESET_PARAMS.update(BPNN_PRESET_PARAMS)
DEFAULT_PRESET["bpnn"] = BPNN_DEFAULT
for _name, _config in GEMNET_PRESETS.items():
    PRESETS[_name] = ("gemnet", dict(_config))
PRESET_PARAMS.update(GEMNET_PRESET_PARAMS)
DEFAULT_PRESET["gemnet"] = GEMNET_DEFAULT
# --- end of issue #25 presets ----------------------------------------------------------
