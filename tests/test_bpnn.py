"""Behler-Parrinello family: symmetry functions against a direct triplet sum, element
handling, model file round trip, torch-sim and the ASE calculator (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlip_scaling import keys
from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.checkpoint import save_potential
from mlip_scaling.data.atomic_data import compute_edge_vectors, from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.errors import ConfigError
from mlip_scaling.models import registry
from mlip_scaling.models.bpnn.descriptors import monomial_table
from mlip_scaling.models.potential import Potential

CONFIG = {"cutoff": 4.0, "elements": "13,28,29", "hidden_channels": 8, "num_layers": 2,
          "num_radial": 5, "num_angular_radial": 2, "num_zeta": 4, "chemical_channels": 2}


def _alloy(seed: int = 3):
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True) * (2, 1, 1)
    atoms.cell[1] += [0.3, 0.0, 0.2]
    atoms.numbers[[1, 3, 6]] = [28, 13, 28]
    atoms.rattle(0.15, seed=seed)
    return atoms


def _graph(atoms, cutoff: float) -> dict:
    data = NeighborListTransform(cutoff)(from_atoms(atoms, labels=False, dtype=torch.float64))
    return compute_edge_vectors(data)


def _direct_g5(model, data) -> np.ndarray:
    """G5 [N, K, S, 2·num_zeta] by the defining double sum over neighbour pairs j ≠ l."""
    desc = model.descriptor
    centre, neighbour = data[keys.EDGE_INDEX].numpy()
    vec = data[keys.EDGE_VECTORS].numpy()
    length = np.linalg.norm(vec, axis=1)
    chem = torch.nn.functional.softplus(desc.chemical).detach().numpy()
    slots = model.slot_of_z[data[keys.ATOMIC_NUMBERS]].numpy()
    fc = desc.envelope(torch.from_numpy(length)).numpy()
    sigma = CONFIG["cutoff"] * np.arange(1, 3) / 3
    # w [E, K, S]
    w = chem[slots[neighbour]][:, :, None] * (fc[:, None] * np.exp(
        -length[:, None] ** 2 / (2 * sigma**2)))[:, None, :]
    n = len(data[keys.POSITIONS])
    out = np.zeros((n, chem.shape[1], 2, 8))
    for a in range(len(centre)):
        for b in np.flatnonzero(centre == centre[a]):
            if a == b:
                continue
            cos = vec[a] @ vec[b] / (length[a] * length[b])
            terms = [2.0 ** (1 - z) * (1 + lam * cos) ** z for z in (1, 2, 4, 8)
                     for lam in (1, -1)]
            out[centre[a]] += (w[a] * w[b])[:, :, None] * np.array(terms)
    return out


def test_monomial_sums_give_powers_of_the_cosine():
    exps, deg, coef = monomial_table(5)
    assert len(exps) == 56  # (5+1)(5+2)(5+3)/6 monomials of degree <= 5 in x, y, z
    u, v = np.random.default_rng(0).normal(size=(2, 3))
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    mono = lambda x: np.prod(x[None, :] ** exps.numpy(), axis=1)  # noqa: E731
    for n in range(6):
        pick = (deg == n).numpy()
        got = np.sum(coef.numpy()[pick] * mono(u)[pick] * mono(v)[pick])
        assert got == pytest.approx((u @ v) ** n, abs=1e-13)


def test_angular_functions_equal_the_triplet_sum():
    torch.manual_seed(0)
    model = registry.build_model("bpnn", CONFIG).double()
    data = _graph(_alloy(), CONFIG["cutoff"])
    features = model.features(data).detach().numpy()
    k, radial = CONFIG["chemical_channels"], CONFIG["num_radial"]
    g5 = features[:, k * radial:].reshape(len(features), k, 2, 8)
    expected = _direct_g5(model, data)
    assert np.abs(expected).max() > 1.0
    np.testing.assert_allclose(g5, expected, rtol=1e-11, atol=1e-11)


def test_unknown_elements_and_bad_element_lists_are_refused():
    model = registry.build_model("bpnn", CONFIG).double()
    atoms = _alloy()
    atoms.numbers[0] = 79
    with pytest.raises(ValueError, match=r"atomic number\(s\) \[79\] not among"):
        model(_graph(atoms, CONFIG["cutoff"]))
    for bad in ("13,13", "0,29", "Cu", "29,119"):
        with pytest.raises(ConfigError, match="elements must be"):
            registry.resolve_model("bpnn", overrides={"elements": bad})


def test_one_network_per_element():
    one = registry.count_parameters("bpnn", {**CONFIG, "elements": "29"})
    three = registry.count_parameters("bpnn", CONFIG)
    chem = CONFIG["chemical_channels"]
    assert three - chem * 3 == 3 * (one - chem)


@pytest.fixture
def model_file(tmp_path) -> tuple:
    """(path of a bpnn-5.3k model file, the structure, the potential's predictions)."""
    torch.manual_seed(1)
    family, config = registry.get_preset("bpnn-5.3k")
    potential = Potential(registry.build_model(family, config), family, config,
                          species=[13, 28, 29], reference_energies={29: -3.0}).double()
    path = save_potential(tmp_path / "bpnn.pt", potential)
    atoms = _alloy(seed=5)
    return path, atoms, ScalingCalculator(potential, dtype="float64").predict([atoms])[0]


def test_model_file_round_trip(model_file):
    path, atoms, expected = model_file
    config = registry.get_preset("bpnn-5.3k")[1]
    assert np.abs(expected["forces"]).max() > 1e-3
    loaded = ScalingCalculator(path, dtype="float64")
    assert loaded.potential.config == config  # descriptor settings travel in the file
    got = loaded.predict([atoms])[0]
    assert got["energy"] == pytest.approx(expected["energy"], rel=1e-12)
    np.testing.assert_allclose(got["forces"], expected["forces"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["stress"], expected["stress"], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("name", ["bpnn-5.3k", "gemnet-4.5k"])
def test_torchsim_model(name, tmp_path):
    """Both new families through torch-sim (batched) equal the ASE calculator."""
    ts = pytest.importorskip("torch_sim")
    from mlip_scaling.calculators.torchsim import ScalingTorchSimModel

    torch.manual_seed(1)
    family, config = registry.get_preset(name)
    potential = Potential(registry.build_model(family, config), family, config,
                          species=[13, 28, 29]).double()
    path = save_potential(tmp_path / "model.pt", potential)
    structures = [_alloy(seed=5), _alloy(seed=6) * (1, 2, 1)]
    expected = ScalingCalculator(potential, dtype="float64").predict(structures)
    model = ScalingTorchSimModel(path, device="cpu", dtype="float64")
    out = model(ts.io.atoms_to_state(structures, model.device, model.dtype))
    start = 0
    for k, (atoms, ref) in enumerate(zip(structures, expected)):
        assert float(out["energy"][k]) == pytest.approx(float(ref["energy"]), abs=1e-10)
        forces = out["forces"][start:start + len(atoms)].numpy()
        np.testing.assert_allclose(forces, ref["forces"], atol=1e-10)
        np.testing.assert_allclose(out["stress"][k].numpy(), _full(ref["stress"]), atol=1e-10)
        start += len(atoms)


def _full(voigt: np.ndarray) -> np.ndarray:
    from ase.stress import voigt_6_to_full_3x3_stress

    return voigt_6_to_full_3x3_stress(voigt)
