"""Size presets: exact parameter counts, geometric ladders, names, nearest-preset lookup."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlip_scaling.models import registry
from mlip_scaling.models.presets import DEFAULT_PRESET, PRESET_PARAMS, PRESETS

#: (family, smallest at most, largest at least, fewest steps) of each size ladder.
LADDERS = [("transformer", 1.5e3, 1.4e8, 8), ("transformer-vec", 1.5e3, 1.4e8, 8),
           ("transformer-m", 1.5e3, 1.4e8, 8),
           ("transformer-seed", 3e3, 1e6, 8),
           ("bpnn", 1.5e3, 1e6, 8), ("gemnet", 1.5e3, 1e7, 8)]


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_params_are_exact(name):
    family, config = PRESETS[name]
    assert "cutoff" in config and config["cutoff"] > 0
    assert registry.count_parameters(family, config) == PRESET_PARAMS[name]


def test_every_preset_has_a_count_and_every_family_a_default():
    assert set(PRESET_PARAMS) == set(PRESETS)
    assert set(DEFAULT_PRESET) == set(registry.FAMILIES)
    for family, name in DEFAULT_PRESET.items():
        assert PRESETS[name][0] == family
    assert 1_000 <= PRESET_PARAMS[DEFAULT_PRESET["transformer"]] <= 150_000
    name = DEFAULT_PRESET["transformer"]
    assert registry.resolve_model("transformer") == (name, *registry.get_preset(name))


@pytest.mark.parametrize("family,smallest,largest,steps", LADDERS)
def test_ladders_are_geometric(family, smallest, largest, steps):
    counts = np.array([PRESET_PARAMS[n] for n in registry.list_presets(family)])
    assert np.all(np.diff(counts) > 0), "presets are defined in increasing size"
    assert len(counts) >= steps
    assert counts[0] <= smallest and counts[-1] >= largest
    ratios = counts[1:] / counts[:-1]
    assert ratios.min() > 1.3 and ratios.max() < 4.0
    # log-sizes close to evenly spaced
    log_counts = np.log(counts)
    even = np.linspace(log_counts[0], log_counts[-1], len(counts))
    assert np.abs(log_counts - even).max() < math.log(2.0)


@pytest.mark.parametrize("family", ["transformer", "transformer-vec", "transformer-m",
                                    "transformer-seed", "eqv2d", "bpnn", "gemnet"])
def test_names_follow_exact_counts(family):
    for name in registry.list_presets(family):
        assert name == f"{family}-{registry.format_size(PRESET_PARAMS[name])}"


@pytest.mark.parametrize("family", ["transformer", "transformer-vec", "transformer-m",
                                    "transformer-seed", "eqv2", "eqv2d", "bpnn", "gemnet"])
def test_nearest_preset(family):
    names = registry.list_presets(family)
    factor = 1.0 if family.startswith("eqv2") else 1.1  # eqv2-28M and eqv2-S: 12 % apart
    for name in names:
        assert registry.nearest_preset(PRESET_PARAMS[name] * factor, family) == name
    by_size = sorted(names, key=PRESET_PARAMS.get)
    assert registry.nearest_preset(1, family) == by_size[0]
    assert registry.nearest_preset(1e13, family) == by_size[-1]
    with pytest.raises(ValueError):
        registry.nearest_preset(1e3, "no-such-family")
