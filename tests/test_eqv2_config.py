"""EquiformerV2: the frozen config, keyword-only constructors, the edge-frame rotation
against an explicit per-edge computation, and outputs against the stored float64 reference
(tests/data/eqv2_reference.pt, written by ``benchmarks/bench_eqv2.py --save``)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from scripts import load_script

from mlip_scaling.checkpoint import potential_from_dict
from mlip_scaling.errors import ConfigError
from mlip_scaling.models import registry
from mlip_scaling.models.equiformer_v2.attention import GraphAttention
from mlip_scaling.models.equiformer_v2.config import EquiformerV2Config
from mlip_scaling.models.equiformer_v2.edge_frame import edge_rotation
from mlip_scaling.models.equiformer_v2.model import EquiformerV2
from mlip_scaling.models.equiformer_v2.so3 import EdgeRotation, wigner_d_blocks

F64 = torch.float64


def _bench():
    return load_script("benchmarks/bench_eqv2.py")


def test_outputs_match_the_stored_float64_reference():
    assert _bench().check_reference(tol=1e-10) == []


def test_config_is_frozen_and_round_trips_through_a_checkpoint_dict():
    family, cfg = registry.get_preset("eqv2-1.5k")
    torch.manual_seed(0)
    model = registry.build_model(family, cfg)
    assert isinstance(model.config, EquiformerV2Config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.lmax = 4
    stored = dataclasses.asdict(model.config)  # what a checkpoint holds: a plain dict
    assert stored == {**stored, **cfg}
    ckpt = {"format": "mlip-scaling/1", "model": {"family": family, "config": cfg},
            "state_dict": model.state_dict(), "species": [29], "cutoff": cfg["cutoff"],
            "reference_energies": {}, "scale": 1.0, "shift": 0.0}
    rebuilt = potential_from_dict(ckpt)
    assert rebuilt.model.config == model.config
    assert EquiformerV2(model.config).config == model.config


def test_bad_config_values_name_the_problem():
    _, cfg = registry.get_preset("eqv2-1.5k")
    with pytest.raises(ConfigError, match="mmax"):
        EquiformerV2Config(**{**cfg, "mmax": 3})
    with pytest.raises(ConfigError, match="norm_type"):
        EquiformerV2Config(**{**cfg, "norm_type": "batch_norm"})
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        registry.build_model("eqv2", {**cfg, "lmax_list": [2]})


def test_graph_attention_takes_keyword_arguments_only():
    with pytest.raises(TypeError):
        GraphAttention(4, 4, 1, 2, 2, 4, 2, 1, None, 10, [4, 4, 4])
    layer = GraphAttention(sphere_channels=4, hidden_channels=4, num_heads=1, alpha_channels=2,
                           value_channels=2, output_channels=4, lmax=2, mmax=1,
                           grid_resolution=None, max_num_elements=10, edge_channels=[4, 4, 4])
    assert layer.so2_conv_1.in_channels == 8


@pytest.mark.parametrize(("lmax", "mmax"), [(2, 1), (3, 2), (4, 2), (2, 2)])
def test_edge_rotation_equals_explicit_per_edge_wigner_rows(lmax, mmax):
    gen = torch.Generator().manual_seed(lmax * 10 + mmax)
    vectors = torch.randn(5, 3, generator=gen, dtype=F64)
    rot = edge_rotation(vectors)
    x = torch.randn(5, (lmax + 1) ** 2, 3, generator=gen, dtype=F64)
    y = torch.randn(5, sum(1 if m == 0 else 2 for m in range(mmax + 1) for _ in range(m, lmax + 1)),
                    3, generator=gen, dtype=F64)
    rotation = EdgeRotation(rot, lmax, mmax)
    got_to, got_from = rotation.to_edge(x), rotation.from_edge(y)
    want_to, want_from = torch.zeros_like(got_to), torch.zeros_like(got_from)
    for e in range(5):
        d = wigner_d_blocks(rot[e : e + 1], lmax)
        rows = [(l, 0) for l in range(lmax + 1)]  # m-primary: m = 0, then +m, then -m
        for m in range(1, mmax + 1):
            rows += [(l, m) for l in range(m, lmax + 1)] + [(l, -m) for l in range(m, lmax + 1)]
        for r, (l, m) in enumerate(rows):
            block = slice(l * l, (l + 1) ** 2)
            want_to[e, r] = d[l][0, l + m] @ x[e, block]
            scale = 1.0 if l <= mmax else math.sqrt((2 * l + 1) / (2 * mmax + 1))
            want_from[e, block] += scale * d[l][0, l + m][:, None] * y[e, r]
    torch.testing.assert_close(got_to, want_to, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_from, want_from, rtol=1e-12, atol=1e-12)
