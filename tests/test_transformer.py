"""Transformer families: the seed transformer's batching and heads, blocks, and a training
step (energy + force loss backward) for every CPU-sized preset of both families."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import collate, from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.models import blocks, transformer_seed
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.presets import PRESET_PARAMS, PRESETS
from mlip_scaling.models.registry import build_model
from mlip_scaling.models.transformer_seed import SeedTransformer

SEED_TINY = {"cutoff": 4.0, "embedding_dim": 5, "num_layers": 2, "num_heads": 2}
CPU_PRESETS = [
    name for name, (family, _) in PRESETS.items()
    if family in ("transformer", "transformer-seed", "transformer-vec", "transformer-m")
    and PRESET_PARAMS[name] <= 2_000_000
]


def _structures() -> list[Atoms]:
    cu = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    cu.rattle(0.05, seed=1)
    nial = bulk("NiAl", "cesiumchloride", a=2.9)
    nial.rattle(0.05, seed=2)
    water = molecule("H2O")
    cluster = Atoms("Cu3Ni", positions=[[0, 0, 0], [2.4, 0, 0], [0, 2.4, 0], [1.2, 1.2, 2.0]])
    return [cu, nial, water, cluster]


def _data(atoms: Atoms, cutoff: float, dtype: torch.dtype = torch.float64) -> dict:
    return NeighborListTransform(cutoff)(from_atoms(atoms, labels=False, dtype=dtype))


def _seed_potential() -> Potential:
    torch.manual_seed(0)
    model = SeedTransformer(**SEED_TINY)
    return Potential(model, "transformer-seed", SEED_TINY, species=[1, 8, 13, 28, 29]).double()


def test_seed_transformer_batches_like_single_structures():
    pot = _seed_potential()
    structures = _structures()
    assert pot.direct_forces
    single = [pot(_data(a, 4.0)) for a in structures]
    batch = pot(collate([_data(a, 4.0) for a in structures]))
    assert batch[keys.ENERGY].shape == (len(structures),)
    assert batch[keys.FORCES].shape == (sum(len(a) for a in structures), 3)
    assert batch[keys.STRESS].shape == (len(structures), 3, 3)
    for name in (keys.ENERGY, keys.FORCES, keys.STRESS):
        torch.testing.assert_close(batch[name], torch.cat([s[name] for s in single]))
    stress = batch[keys.STRESS]
    torch.testing.assert_close(stress, stress.transpose(1, 2))
    assert stress[2:].abs().max() < 1e-12  # molecule and cluster are not periodic
    assert stress[:2].abs().max() > 0


def test_seed_transformer_is_not_invariant():
    assert "NOT invariant" in transformer_seed.__doc__
    pot = _seed_potential()
    atoms = _structures()[3]
    rotated = atoms.copy()
    rotated.rotate(60, "z", center="COM")
    e0 = pot(_data(atoms, 4.0))[keys.ENERGY]
    e1 = pot(_data(rotated, 4.0))[keys.ENERGY]
    assert abs(float(e1 - e0)) > 1e-6


def test_segment_softmax_normalised_stable_and_continuous():
    logits = torch.tensor([[1e4], [0.0], [3.0], [-1e4], [2.0]], dtype=torch.float64)
    index = torch.tensor([0, 0, 1, 1, 2])
    extra = torch.tensor([[0.0], [5.0], [1.0]], dtype=torch.float64)
    p, p_extra = blocks.segment_softmax(logits, index, 3, extra_logits=extra)
    totals = blocks.scatter_sum(p, index, 3) + p_extra
    torch.testing.assert_close(totals, torch.ones_like(totals))
    assert torch.isfinite(p).all() and p[0, 0] == pytest.approx(1.0)
    weights = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    p, p_extra = blocks.segment_softmax(logits, index, 3, weights, extra)
    # a zero-weight edge drops out
    assert abs(float(p[4, 0])) < 1e-12 and float(p_extra[2, 0]) == pytest.approx(1.0, rel=1e-12)


def test_envelopes_are_smooth_at_the_cutoff():
    r = torch.tensor([0.0, 3.999999, 4.0, 4.5], dtype=torch.float64, requires_grad=True)
    for env in (blocks.PolynomialCutoff(4.0), blocks.CosineCutoff(4.0)):
        u = env(r)
        (grad,) = torch.autograd.grad(u.sum(), r)
        u = u.detach()
        assert u[0] == pytest.approx(1.0) and u[1] < 1e-9 and u[2:].abs().max() < 1e-12
        assert grad[1].abs() < 1e-5 and grad[2:].abs().max() < 1e-12


def _training_batch(cutoff: float) -> dict:
    rng = np.random.default_rng(0)
    structures = []
    for k in range(8):
        atoms = bulk("Cu", "fcc", a=3.6) if k % 2 else bulk("NiAl", "cesiumchloride", a=2.9)
        atoms.rattle(0.05, seed=k)
        atoms.calc = None
        data = _data(atoms, cutoff, torch.float32)
        data[keys.ENERGY] = torch.tensor([rng.normal()], dtype=torch.float32)
        data[keys.FORCES] = torch.tensor(rng.normal(size=(len(atoms), 3)), dtype=torch.float32)
        data[keys.STRESS] = torch.tensor(rng.normal(size=(1, 3, 3)), dtype=torch.float32)
        structures.append(data)
    return collate(structures)


@pytest.mark.parametrize("name", CPU_PRESETS)
def test_preset_forward_backward(name):
    family, config = PRESETS[name]
    torch.manual_seed(0)
    model = build_model(family, config)
    pot = Potential(model, family, config, species=[13, 28, 29])
    batch = _training_batch(pot.cutoff)
    out = pot(batch, create_graph=True)
    loss = sum(torch.mean((out[k] - batch[k]) ** 2) for k in (keys.ENERGY, keys.FORCES,
                                                              keys.STRESS))
    loss.backward()
    assert torch.isfinite(loss)
    for pname, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
        if not pname.startswith("embedding"):  # unused elements get no gradient
            assert param.grad.abs().sum() > 0, pname


def test_transformer_options_default_off_and_checked() -> None:
    config = {"cutoff": 4.0, "num_layers": 2, "hidden_channels": 8, "num_heads": 2,
              "ffn_hidden": 8, "num_radial": 4}
    plain = build_model("transformer", config)
    assert all(layer.moments is None for layer in plain.layers)
    assert plain.species_radial is None and not plain.needs_directions
    density = build_model("transformer", {**config, "moment_channels": 2, "moment_order": 0})
    assert not density.needs_directions  # order 0 sums weights, no directions
    pot = Potential(density, "transformer", config, species=[29]).double()
    out = pot(_data(bulk("Cu", "fcc", a=3.6) * (2, 1, 1), 4.0))
    assert torch.isfinite(out[keys.FORCES]).all()
    with pytest.raises(ValueError, match="moment_order must be 0, 1 or 2"):
        build_model("transformer", {**config, "moment_channels": 2, "moment_order": 3})


def test_force_options_can_be_set_from_mlip_train() -> None:
    from mlip_scaling.errors import ConfigError
    from mlip_scaling.models.registry import check_model_config

    base = PRESETS["transformer-57k"][1]
    check_model_config("transformer", base, {"envelope": "cosine", "species_radial": True})
    with pytest.raises(ConfigError, match="envelope must be a name"):
        check_model_config("transformer", base, {"envelope": 3})
    model = build_model("transformer", {**base, "envelope": "cosine", "species_radial": True})
    assert sum(p.numel() for p in model.parameters()) == PRESET_PARAMS["transformer-57k"] + 1904
