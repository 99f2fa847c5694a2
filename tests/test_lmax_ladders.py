"""Fixed-degree EquiformerV2 ladders: counts, degrees, ordering, and rotation physics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from scipy.spatial.transform import Rotation

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.models import registry
from mlip_scaling.models.equiformer_v2.lmax_ladders import LMAX_FAMILIES
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.presets import PRESET_PARAMS


@pytest.mark.parametrize("family", sorted(LMAX_FAMILIES))
def test_ladder_is_geometric_named_and_of_one_degree(family):
    names = registry.list_presets(family)
    counts = np.array([PRESET_PARAMS[n] for n in names])
    assert len(names) >= 4 and np.all(np.diff(counts) > 0)
    assert counts[0] < 2_500 and counts[-1] > 100_000
    ratios = counts[1:] / counts[:-1]
    assert ratios.min() > 2.0 and ratios.max() < 4.0
    lmax, mmax = LMAX_FAMILIES[family]
    for name in names:
        assert name == f"{family}-{registry.format_size(PRESET_PARAMS[name])}"
        got_family, config = registry.get_preset(name)
        assert got_family == family and (config["lmax"], config["mmax"]) == (lmax, mmax)
        assert config["direct_forces"] is False
    assert registry.resolve_model(family)[1] == family


def test_higher_degree_costs_parameters_at_equal_width():
    """At the same width and depth an lmax-3 model has more weights than an lmax-1 one."""
    l1 = registry.get_preset("eqv2-l1-1.3k")[1]
    l3 = registry.get_preset("eqv2-l3-1.9k")[1]
    assert {k: v for k, v in l1.items() if k not in ("lmax", "mmax")} == {
        k: v for k, v in l3.items() if k not in ("lmax", "mmax")}
    assert PRESET_PARAMS["eqv2-l3-1.9k"] > PRESET_PARAMS["eqv2-l1-1.3k"]


def _predict(pot: Potential, atoms) -> dict[str, np.ndarray]:
    data = NeighborListTransform(pot.cutoff)(from_atoms(atoms, labels=False))
    return {k: v.detach().numpy() for k, v in pot(data).items()}


@pytest.mark.parametrize("name", ["eqv2-l1-1.3k", "eqv2-l3-1.9k"])
def test_smallest_presets_are_rotation_equivariant(name):
    family, config = registry.get_preset(name)
    torch.manual_seed(0)
    model = registry.build_model(family, config)
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.3)  # random weights of order one
    pot = Potential(model, family, config, species=[14]).double().eval()
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.3, seed=1)
    ref = _predict(pot, atoms)
    matrix = Rotation.random(random_state=3).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ matrix.T
    turned.cell = np.asarray(atoms.cell) @ matrix.T
    out = _predict(pot, turned)
    np.testing.assert_allclose(out[keys.ENERGY], ref[keys.ENERGY], rtol=1e-7)
    scale = np.abs(ref[keys.FORCES]).max()
    assert scale > 1e-8  # not vacuous: float64 rounding is ~1e-16 of the energy
    np.testing.assert_allclose(out[keys.FORCES], ref[keys.FORCES] @ matrix.T,
                               atol=1e-3 * scale)  # minimal S² grids: equivariant to ~1e-4
    mirrored = atoms.copy()  # a non-rotation moves the forces: the check can fail
    mirrored.positions[0] += [0.05, 0.0, 0.0]
    assert np.abs(_predict(pot, mirrored)[keys.FORCES] - ref[keys.FORCES]).max() > 0.01 * scale
