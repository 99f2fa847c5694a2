"""Model families and size presets: build a model from ``(family, config)``."""

from __future__ import annotations

import importlib
import inspect
import json
import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from mlip_scaling.cli_args import POSITIVE, POSITIVE_INT
from mlip_scaling.errors import ConfigError
from mlip_scaling.models.presets import DEFAULT_PRESET, PRESET_PARAMS, PRESETS, format_size

__all__ = [
    "FAMILIES",
    "build_model",
    "check_model_config",
    "count_parameters",
    "meta_shapes",
    "format_size",
    "get_preset",
    "list_presets",
    "nearest_preset",
    "resolve_model",
    "size_name",
    "validate_config",
]

#: family name -> "module:Class"; the class is built as ``Class(**config)``.
FAMILIES: dict[str, str] = {
    "transformer": "mlip_scaling.models.transformer:TransformerEnergyModel",
    "transformer-seed": "mlip_scaling.models.transformer_seed:SeedTransformer",
    # the transformer with lab-frame direction features (not rotation invariant)
    "transformer-vec": "mlip_scaling.models.transformer:TransformerEnergyModel",
    # the transformer with three-body neighbour moments (invariant, angular information)
    "transformer-m": "mlip_scaling.models.transformer:TransformerEnergyModel",
    "eqv2": "mlip_scaling.models.equiformer_v2.model:EquiformerV2",
    # --- fixed-degree EquiformerV2 ladders: families of their own, the same class ---
    "eqv2-l1": "mlip_scaling.models.equiformer_v2.model:EquiformerV2",
    "eqv2-l3": "mlip_scaling.models.equiformer_v2.model:EquiformerV2",
    # --- end of the fixed-degree ladders ---
    # direct-force ladder: the same class, its presets set direct_forces (see presets.py)
    "eqv2d": "mlip_scaling.models.equiformer_v2.model:EquiformerV2",
}
# --- new families (issue #25): Behler-Parrinello networks, GemNet-OC ---------------
FAMILIES["bpnn"] = "mlip_scaling.models.bpnn.model:BehlerParrinello"
FAMILIES["gemnet"] = "mlip_scaling.models.gemnet_oc.model:GemNetOC"
# --- end of the issue #25 families ---------------------------------------------------


#: sane ranges (inclusive) of integer hyperparameters; the presets sit well inside them
INT_RANGES: dict[str, tuple[int, int]] = {
    "num_layers": (1, 64), "num_heads": (1, 256), "max_num_elements": (1, 256),
    "hidden_channels": (1, 16384), "ffn_hidden": (1, 65536), "num_radial": (1, 1024),
    "envelope_exponent": (1, 32), "embedding_dim": (1, 16384), "ffn_multiplier": (1, 64),
    "sphere_channels": (1, 8192), "attn_hidden_channels": (1, 8192),
    "attn_alpha_channels": (1, 8192), "attn_value_channels": (1, 8192),
    "ffn_hidden_channels": (1, 65536), "edge_channels": (1, 8192), "lmax": (0, 8),
    "mmax": (0, 8), "grid_resolution": (2, 48), "num_distance_basis": (1, 8192),
    "max_neighbors": (1, 100_000),
}
#: ranges of float hyperparameters: (low, high], low exclusive unless it is 0.0 and listed
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "cutoff": (0.0, 30.0), "logit_cap": (0.0, 1e6), "avg_num_nodes": (0.0, 1e9),
    "avg_degree": (0.0, 1e9), "alpha_drop": (0.0, 1.0), "drop_path_rate": (0.0, 1.0),
}
_ZERO_ALLOWED = {"alpha_drop", "drop_path_rate"}
_NULLABLE = {"grid_resolution", "max_neighbors"}
# --- ranges of the issue #25 families' hyperparameters ------------------------------
INT_RANGES.update({"num_angular_radial": (1, 64), "num_zeta": (1, 4),
                   "chemical_channels": (1, 256), "num_blocks": (1, 64),
                   "num_spherical": (1, 16), "num_elements": (1, 256),
                   "envelope_exponent": (1, 32)})
INT_RANGES.update({f"emb_size_{k}": (1, 8192) for k in (
    "atom", "edge", "trip_in", "trip_out", "quad_in", "quad_out", "aint_in", "aint_out",
    "rbf", "cbf", "sbf")})
INT_RANGES.update({k: (0, 64) for k in (
    "num_before_skip", "num_after_skip", "num_concat", "num_atom", "num_output_afteratom",
    "num_atom_emb_layers", "num_global_out_layers")})
INT_RANGES.update({f"max_neighbors_{k}": (1, 100_000) for k in ("qint", "aeaint", "aint")})
FLOAT_RANGES.update({f"cutoff_{k}": (0.0, 30.0) for k in ("main", "qint", "aeaint")})
_NULLABLE.update({"cutoff_main", "cutoff_qint", "cutoff_aeaint", "max_neighbors_qint",
                  "max_neighbors_aeaint", "max_neighbors_aint"})
# --- end of the issue #25 ranges -----------------------------------------------------


def _family_class(family: str) -> type[nn.Module]:
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    module, _, name = FAMILIES[family].partition(":")
    return getattr(importlib.import_module(module), name)


def _check_keys(cls: type[nn.Module], family: str, config: dict) -> None:
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    names = [n for n in params if n != "self"]
    unknown = sorted(str(k) for k in config if k not in names)
    missing = [n for n in names if params[n].default is inspect.Parameter.empty
               and n not in config and params[n].kind is not params[n].VAR_POSITIONAL]
    if unknown:
        raise ConfigError(f"{family} model config: unknown hyperparameter(s) "
                          f"{', '.join(unknown)}; known: {', '.join(names)}")
    if missing:
        raise ConfigError(f"{family} model config lacks {', '.join(missing)}")


def _check_value(family: str, key: str, value: object) -> None:
    where = f"{family} model config: {key}"
    if value is None and key in _NULLABLE:
        return
    if key in INT_RANGES:
        low, high = INT_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{where} must be a whole number in [{low}, {high}], got {value!r}")
    elif key in FLOAT_RANGES:
        low, high = FLOAT_RANGES[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        above = number and (value >= low if key in _ZERO_ALLOWED else value > low)
        if not (above and value <= high):
            raise ConfigError(f"{where} must be a number in ({low:g}, {high:g}], got {value!r}")
    elif key == "output_normalizers":
        _check_normalizers(where, value)
    elif not isinstance(value, bool | int | float | str) and value is not None:
        raise ConfigError(f"{where} must be a plain number, string or boolean, "
                          f"got {type(value).__name__}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be finite, got {value!r}")


def _check_normalizers(where: str, value: object) -> None:
    """``{"energy": [rmsd, ...], ...}``: a short list of finite numbers per output name."""
    if value is None:
        return
    ok = isinstance(value, dict) and len(value) <= 8 and all(
        isinstance(k, str) and isinstance(v, list | tuple) and 1 <= len(v) <= 16 and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in v) for k, v in value.items())
    if not ok:
        raise ConfigError(f"{where} must map output names to short lists of finite numbers")


def validate_config(family: str, config: dict) -> None:
    """Check ``config`` of ``family`` without building anything: known keys, every
    required key present, values of plain types within sane ranges (ConfigError)."""
    cls = _family_class(family)
    if not isinstance(config, dict):
        raise ConfigError(f"{family} model config must be a mapping, got "
                          f"{type(config).__name__}")
    _check_keys(cls, family, config)
    for key, value in config.items():
        _check_value(family, str(key), value)
    if isinstance(config.get("mmax"), int) and config["mmax"] > config.get("lmax", math.inf):
        raise ConfigError(f"{family} model config: mmax={config['mmax']} exceeds "
                          f"lmax={config['lmax']}")


def build_model(family: str, config: dict, device: torch.device | str | None = None) -> nn.Module:
    """Instantiate the energy model of ``family`` with hyperparameters ``config``
    (checked by :func:`validate_config` first)."""
    validate_config(family, config)
    cls = _family_class(family)
    with torch.device(device) if device is not None else nullcontext():
        return cls(**config)


#: in-place ops and ``nn.init`` functions that only fill values: no-ops on meta tensors
_FILL_OPS = frozenset({
    "normal_", "uniform_", "zero_", "fill_", "random_", "exponential_", "erfinv_", "mul_",
    "add_", "sub_", "div_", "clamp_", "copy_", "zeros_", "ones_", "constant_", "eye_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
    "trunc_normal_", "orthogonal_",
})

#: factories of small lookup tables (sized by bounded hyperparameters), built on the CPU
_RANGE_OPS = frozenset({"arange", "linspace", "logspace"})


class _SkipMetaInit(TorchFunctionMode):
    """Skip value-filling ops on meta tensors: they change no shape, and the first one in
    a process imports torch's compiler stack (~3 s)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        first = args[0] if args else kwargs.get("tensor")
        if name in _FILL_OPS and isinstance(first, torch.Tensor) and first.is_meta:
            return first
        if name in _RANGE_OPS and str(kwargs.get("device")) == "meta":
            kwargs["device"] = "cpu"  # small config-sized tables, computed for real
        return func(*args, **kwargs)


def meta_shapes(family: str, config: dict) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every state_dict entry the model would have, built on the meta
    device (no weights allocated, no initialisation run)."""
    with _SkipMetaInit():
        model = build_model(family, config, device="meta")
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def count_parameters(family: str, config: dict) -> int:
    """Exact number of trainable parameters, counted on the meta device (no memory)."""
    model = build_model(family, config, device="meta")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def list_presets(family: str | None = None) -> list[str]:
    """Preset names, optionally of one family, in the order they are defined."""
    return [n for n, (f, _) in PRESETS.items() if family is None or f == family]


def get_preset(name: str) -> tuple[str, dict]:
    """``(family, config)`` of a preset name such as ``'eqv2-86M'``."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
    family, config = PRESETS[name]
    return family, dict(config)


def nearest_preset(n_params: float, family: str) -> str:
    """The preset of ``family`` whose parameter count is nearest ``n_params`` (log scale)."""
    names = list_presets(family)
    if not names:
        raise ValueError(f"no presets for family {family!r}")
    return min(names, key=lambda n: abs(math.log(PRESET_PARAMS[n] / float(n_params))))


def _model_value_rule(old: Any) -> tuple[Callable[[Any], bool], str]:
    """How an override of a preset value ``old`` is checked, and the rule in words."""
    if isinstance(old, bool):
        return (lambda v: isinstance(v, bool)), "true or false"
    if isinstance(old, str):  # a name, checked by the model's builder
        return (lambda v: isinstance(v, str) and v != ""), "a name (string)"
    if isinstance(old, int):
        return (lambda v: isinstance(v, int) and POSITIVE_INT.accepts(v)), POSITIVE_INT.describe()
    if old is None:
        return (lambda v: v is None or POSITIVE.accepts(v)), POSITIVE.describe() + " or null"
    return POSITIVE.accepts, POSITIVE.describe()


def check_model_config(family: str, base: dict[str, Any], overrides: dict[str, Any]) -> None:
    """``--model-config`` overrides of a preset ``base``: known keys, same kinds of value,
    numbers finite and > 0 (every numeric hyperparameter is a size, count or length)."""
    for key, value in overrides.items():
        if key not in base:
            raise ConfigError(f"--model-config: {family!r} has no hyperparameter {key!r}; known: "
                              f"{', '.join(sorted(base))}")
        accepts, rule = _model_value_rule(base[key])
        if not accepts(value):
            raise ConfigError(f"--model-config: {key} must be {rule}, got {value!r}")


def size_name(family: str, config: dict) -> str:
    """``<family>-<size>`` of a model, e.g. ``transformer-7.0k`` (exact parameter count)."""
    return f"{family}-{format_size(count_parameters(family, config))}"


def _preset_of(spec: str, params: float | None) -> str:
    """The preset that ``spec`` (preset or family) and ``params`` (nearest size) name."""
    if params is not None:
        family = spec if spec in FAMILIES else get_preset(spec)[0]
        return nearest_preset(params, family)
    return DEFAULT_PRESET.get(spec, spec)


def resolve_model(spec: str, params: float | None = None,
                  overrides: dict[str, Any] | None = None) -> tuple[str, str, dict]:
    """``(name, family, config)`` of a preset or family name (its default preset, or with
    ``params`` its preset nearest that many parameters) with hyperparameter ``overrides``
    (then the name is ``<family>-<size>`` of the built model). ConfigError naming --model
    or --model-config when they do not resolve."""
    try:
        name = _preset_of(spec, params)
        family, config = get_preset(name)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"--model {spec!r}: {str(exc).strip(chr(39))}") from None
    if not overrides:
        return name, family, config
    check_model_config(family, config, overrides)
    config = {**config, **overrides}
    try:
        return size_name(family, config), family, config
    except (TypeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"--model-config: {family!r} rejects these hyperparameters "
                          f"({first})") from None


def stored_form(config: dict | None) -> dict | None:
    """Hyperparameters as model files and run states store them (JSON data: tuples as
    lists), so that two configs compare equal when they build the same model."""
    return json.loads(json.dumps(config))
