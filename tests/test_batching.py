"""One atoms -> data conversion and one collate for training, calculators and torch-sim;
device and dtype resolution; the energy-model protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule
from test_calculator import CUTOFF, methane, rattled_cu, smooth_potential

from mlip_scaling import keys
from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.calculators.inference import sorted_neighbors
from mlip_scaling.data.atomic_data import (
    IdentityCache,
    check_elements,
    collate,
    from_arrays,
    from_atoms,
    identity_tensors,
)
from mlip_scaling.devices import resolve_device, resolve_dtype
from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.models import registry
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.protocol import INPUTS, EnergyModel


def _same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        torch.testing.assert_close(a[name], b[name], rtol=1e-15, atol=0)


def _labelled() -> list:
    structures = [rattled_cu(seed=3), methane()]
    for k, atoms in enumerate(structures):
        atoms.info["energy"] = -1.5 - k
        atoms.arrays["forces"] = np.full((len(atoms), 3), 0.1 * (k + 1))
    structures[0].info["stress"] = np.arange(6.0)
    return structures


def test_collate_offsets_edges_and_rebuilds_the_batch_layout():
    structures = [rattled_cu(seed=1), methane(), rattled_cu(repeat=(1, 1, 2), seed=2)]
    items = []
    for atoms in structures:
        edges = sorted_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, CUTOFF)
        # a structure carrying its own batch index (as the calculator's do) collates the same
        identity = IdentityCache()(atoms.numbers, atoms.pbc)
        items.append(from_atoms(atoms, labels=False, edges=edges, identity=identity))
    batch = collate(items)
    counts = [len(a) for a in structures]
    assert batch[keys.NUM_ATOMS].tolist() == counts
    assert batch[keys.BATCH].tolist() == sum(([k] * n for k, n in enumerate(counts)), [])
    offsets = np.cumsum([0, *counts[:-1]])
    want = np.concatenate([d[keys.EDGE_INDEX].numpy() + o for d, o in zip(items, offsets)], 1)
    assert np.array_equal(batch[keys.EDGE_INDEX].numpy(), want)
    torch.testing.assert_close(batch[keys.POSITIONS],
                               torch.tensor(np.concatenate([a.positions for a in structures])))


def test_collate_moves_the_batch_to_a_device():
    items = [from_atoms(a) for a in _labelled()[:1]] * 2
    batch = collate(items, device="meta")
    assert {t.device.type for t in batch.values()} == {"meta"}
    assert collate(items)[keys.STRESS].device.type == "cpu"


def test_collate_names_a_field_missing_from_one_structure():
    first, second = (from_atoms(a) for a in _labelled())
    with pytest.raises(KeyError, match="'stress' is missing from structure 1"):
        collate([first, second])


def test_from_atoms_keeps_labels_dtype_and_device():
    data = from_atoms(_labelled()[0], dtype=torch.float32, device="meta")
    assert data[keys.POSITIONS].dtype == torch.float32 and data[keys.ENERGY].shape == (1,)
    assert data[keys.STRESS].shape == (1, 3, 3) and data[keys.FORCES].shape == (32, 3)
    assert {t.device.type for t in data.values()} == {"meta"}
    assert data[keys.ATOMIC_NUMBERS].dtype == torch.long and keys.BATCH not in data


def test_from_arrays_casts_floats_only_for_dtypes_numpy_lacks():
    atoms = _labelled()[0]
    data = from_arrays(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc,
                       {keys.ENERGY: np.float64(-1.5)}, dtype=torch.bfloat16)
    assert data[keys.POSITIONS].dtype == data[keys.ENERGY].dtype == torch.bfloat16
    assert data[keys.ATOMIC_NUMBERS].dtype == torch.long and data[keys.PBC].dtype == torch.bool
    assert data[keys.CELL].shape == (1, 3, 3) and data[keys.NUM_ATOMS].tolist() == [32]


def test_identity_cache_reuses_tensors_until_the_atoms_change():
    cache = IdentityCache()
    atoms = rattled_cu()
    first = cache(atoms.numbers, atoms.pbc)
    atoms.positions += 0.01
    assert cache(atoms.numbers, atoms.pbc)[keys.ATOMIC_NUMBERS] is first[keys.ATOMIC_NUMBERS]
    _same({k: v for k, v in first.items() if k != keys.BATCH},
          identity_tensors(atoms.numbers, atoms.pbc))
    atoms.numbers[0] = 28
    changed = cache(atoms.numbers, atoms.pbc)
    assert int(changed[keys.ATOMIC_NUMBERS][0]) == 28
    atoms.pbc = [True, True, False]
    assert cache(atoms.numbers, atoms.pbc)[keys.PBC].tolist() == [[True, True, False]]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_calculator_step_and_batch_inputs_are_one_conversion(dtype):
    calc = ScalingCalculator(smooth_potential(), dtype=dtype)
    atoms = rattled_cu(seed=4)
    step, batch = calc._data(atoms), calc._data(atoms, index=0)
    _same(step, {**batch, keys.BATCH: torch.zeros(len(atoms), dtype=torch.long)})
    edges = sorted_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, CUTOFF)
    _same(batch, from_atoms(atoms, labels=False, dtype=resolve_dtype(dtype), edges=edges))


def test_torchsim_batch_is_the_collate_of_the_calculator_inputs():
    ts = pytest.importorskip("torch_sim")
    from mlip_scaling.calculators.torchsim import ScalingTorchSimModel

    model = ScalingTorchSimModel(smooth_potential(), device="cpu", dtype="float64")
    systems = [rattled_cu(seed=5), rattled_cu(repeat=(1, 2, 1), seed=6)]
    state = ts.io.atoms_to_state(systems, model.device, model.dtype)
    calc = ScalingCalculator(smooth_potential(), dtype="float64")
    want = collate([calc._data(a, k) for k, a in enumerate(systems)])
    got = model._batch(state)
    # torch-sim keeps the cell in its own (transposed) convention; compare the rest exactly
    for name in (keys.EDGE_INDEX, keys.BATCH, keys.NUM_ATOMS, keys.ATOMIC_NUMBERS, keys.PBC):
        assert torch.equal(got[name], want[name]), name
    torch.testing.assert_close(got[keys.POSITIONS], want[keys.POSITIONS], rtol=1e-12, atol=0)
    torch.testing.assert_close(got[keys.CELL], want[keys.CELL], rtol=1e-12, atol=0)


def test_check_elements_names_the_owner_and_the_range():
    check_elements(np.array([1, 29, 118]), lambda atom: "x")
    with pytest.raises(DataError, match=r"^cell\.xyz: atom 1: atomic number 0 is not an "
                                        r"element in 1\.\.118$"):
        check_elements(np.array([8, 0]), lambda atom: f"cell.xyz: atom {atom}")
    with pytest.raises(DataError, match=r"atomic number 96 is not an element in 1\.\.95"):
        check_elements(np.array([29, 96]), lambda atom: "species", limit=95)


def test_resolve_device_auto_index_and_local_rank(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="'cuda:1' requested but CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="'gpu0' is not a device"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")  # calculators: the current GPU
    assert resolve_device("auto", local_rank=2) == torch.device("cuda", 2)  # torchrun rank
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert resolve_device("cuda:1", local_rank=3) == torch.device("cuda", 1)


def test_resolve_dtype():
    assert resolve_dtype("float32") is torch.float32 and resolve_dtype(torch.float64)
    with pytest.raises(ConfigError, match="'float16'"):
        resolve_dtype("float16")


@pytest.mark.parametrize("family", sorted(registry.FAMILIES))
def test_every_family_is_an_energy_model(family):
    config = registry.get_preset(registry.list_presets(family)[0])[1]
    model = registry.build_model(family, config, device="meta")
    assert isinstance(model, EnergyModel)
    assert model.cutoff == config["cutoff"] and isinstance(model.direct_forces, bool)


def test_potential_refuses_a_model_without_the_protocol():
    class NoFlag(torch.nn.Module):
        cutoff = CUTOFF

        def forward(self, data):
            return {keys.ATOMIC_ENERGIES: data[keys.POSITIONS][:, 0]}

    with pytest.raises(TypeError, match="NoFlag is not an EnergyModel: it lacks direct_forces"):
        Potential(NoFlag(), "x", {"cutoff": CUTOFF}, species=[29])


def test_single_structure_inputs_get_the_batch_layout():
    seen = {}

    class Spy(torch.nn.Module):
        cutoff, direct_forces = CUTOFF, False

        def forward(self, data):
            seen.update(data)
            return {keys.ATOMIC_ENERGIES: data[keys.EDGE_LENGTHS].new_zeros(3)}

    atoms = molecule("H2O")
    atoms.center(vacuum=3.0)
    edges = sorted_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, CUTOFF)
    data = from_atoms(atoms, labels=False, edges=edges)
    del data[keys.NUM_ATOMS]
    Potential(Spy(), "spy", {"cutoff": CUTOFF}, species=[1, 8])(data, False, False)
    assert set(INPUTS) <= set(seen) and seen[keys.NUM_ATOMS].tolist() == [3]
