"""Model families and size presets: build a model from ``(family, config)``."""

from __future__ import annotations

import importlib
import math
from contextlib import nullcontext

import torch
from torch import nn

__all__ = [
    "FAMILIES",
    "build_model",
    "count_parameters",
    "format_size",
    "get_preset",
    "list_presets",
    "nearest_preset",
    "resolve_model",
]

#: family name -> "module:Class"; the class is built as ``Class(**config)``.
FAMILIES: dict[str, str] = {
    "transformer": "mlip_scaling.models.transformer:TransformerEnergyModel",
    "transformer-seed": "mlip_scaling.models.transformer_seed:SeedTransformer",
    "eqv2": "mlip_scaling.models.equiformer_v2.model:EquiformerV2",
}


def _family_class(family: str) -> type[nn.Module]:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    module, _, name = FAMILIES[family].partition(":")
    return getattr(importlib.import_module(module), name)


def build_model(family: str, config: dict, device: torch.device | str | None = None) -> nn.Module:
    """Instantiate the energy model of ``family`` with hyperparameters ``config``."""
    cls = _family_class(family)
    with torch.device(device) if device is not None else nullcontext():
        return cls(**config)


def count_parameters(family: str, config: dict) -> int:
    """Exact number of trainable parameters, counted on the meta device (no memory)."""
    model = build_model(family, config, device="meta")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def format_size(n_params: int) -> str:
    """Human size used in preset names: 2300 -> '2.3k', 86_589_068 -> '87M'."""
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n_params >= div:
            value = n_params / div
            return f"{value:.1f}{unit}" if value < 10 else f"{round(value)}{unit}"
    return str(n_params)


def _presets() -> dict[str, tuple[str, dict]]:
    from mlip_scaling.models.presets import PRESETS

    return PRESETS


def list_presets(family: str | None = None) -> list[str]:
    """Preset names, optionally of one family, in the order they are defined."""
    return [n for n, (f, _) in _presets().items() if family is None or f == family]


def get_preset(name: str) -> tuple[str, dict]:
    """``(family, config)`` of a preset name such as ``'eqv2-86M'``."""
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(presets)}")
    family, config = presets[name]
    return family, dict(config)


def nearest_preset(n_params: float, family: str) -> str:
    """The preset of ``family`` whose parameter count is nearest ``n_params`` (log scale)."""
    from mlip_scaling.models.presets import PRESET_PARAMS

    names = list_presets(family)
    if not names:
        raise ValueError(f"no presets for family {family!r}")
    return min(names, key=lambda n: abs(math.log(PRESET_PARAMS[n] / float(n_params))))


def resolve_model(spec: str) -> tuple[str, dict]:
    """A preset name, or a family name (its default preset) -> ``(family, config)``."""
    from mlip_scaling.models.presets import DEFAULT_PRESET

    if spec in FAMILIES:
        return get_preset(DEFAULT_PRESET[spec])
    return get_preset(spec)
