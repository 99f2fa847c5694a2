"""HDF5 store: round trip, atomic writes, corrupt files, merge, readers, splits."""

from __future__ import annotations

import ase.db
import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from mlip_scaling import keys
from mlip_scaling.data.readers import open_dataset, read_structures
from mlip_scaling.data.splits import nested_subset, split_indices
from mlip_scaling.data.store import StructureStore, merge_stores, write_store
from mlip_scaling.errors import DataError


def _labelled(n: int, seed: int = 0) -> list:
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6) * (1 + k % 2, 1, 2)
        atoms.rattle(0.05, seed=seed + k)
        atoms.calc = EMT()
        atoms.get_stress()
        out.append(atoms)
    mol = molecule("H2O")
    mol.calc = EMT()
    mol.get_forces()
    out.append(mol)
    return out


def test_round_trip(tmp_path):
    structures = _labelled(4)
    path = write_store(tmp_path / "s.h5", structures, {"oracle": "emt", "name": "t"})
    store = StructureStore(path)
    assert len(store) == 5 and store.species == [1, 8, 29]
    assert store.metadata["oracle"] == "emt" and len(store.metadata["content_hash"]) == 64
    for i, atoms in enumerate(structures):
        data = store[i]
        np.testing.assert_allclose(data[keys.POSITIONS].numpy(), atoms.positions, rtol=1e-12)
        np.testing.assert_allclose(data[keys.FORCES].numpy(), atoms.get_forces(), rtol=1e-12)
        assert float(data[keys.ENERGY]) == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
        back = store.get_atoms(i)
        np.testing.assert_allclose(back.get_forces(), atoms.get_forces(), rtol=1e-12)
    assert keys.STRESS in store[0] and keys.STRESS not in store[4]
    np.testing.assert_allclose(store.get_atoms(0).get_stress(), structures[0].get_stress())
    assert store.has_stress.tolist() == [True] * 4 + [False]


def test_store_items_are_the_shared_conversion_of_their_atoms(tmp_path):
    from mlip_scaling.data.atomic_data import from_atoms

    store = StructureStore(write_store(tmp_path / "s.h5", _labelled(2)))
    for i in range(len(store)):
        item, shared = store[i], from_atoms(store.get_atoms(i))
        assert sorted(item) == sorted(shared)
        for name, value in item.items():
            assert value.dtype == shared[name].dtype and value.shape == shared[name].shape
            torch.testing.assert_close(value, shared[name], rtol=1e-15, atol=0)


def test_bad_labels_leave_nothing(tmp_path):
    structures = _labelled(3)
    structures[1].calc.results["forces"] = np.zeros((2, 3))
    with pytest.raises(DataError, match="structure 1: forces have shape"):
        write_store(tmp_path / "bad.h5", structures)
    structures = _labelled(3)
    structures[2].calc.results["energy"] = float("nan")
    with pytest.raises(DataError, match="structure 2: energy contains NaN"):
        write_store(tmp_path / "bad.h5", structures)
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_is_reported(tmp_path):
    path = write_store(tmp_path / "s.h5", _labelled(3))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="s.h5"):
        StructureStore(path)[0]


def test_merge_and_content_hash(tmp_path):
    a = write_store(tmp_path / "a.h5", _labelled(2, seed=1))
    b = write_store(tmp_path / "b.h5", _labelled(3, seed=7))
    merged = StructureStore(merge_stores([a, b], tmp_path / "m.h5", {"name": "m"}))
    whole = StructureStore(write_store(tmp_path / "w.h5", _labelled(2, 1) + _labelled(3, 7)))
    assert len(merged) == 7
    assert merged.metadata["content_hash"] == whole.metadata["content_hash"]
    torch.testing.assert_close(merged[4][keys.FORCES], whole[4][keys.FORCES])


def test_readers(tmp_path):
    structures = _labelled(3)
    ase.io.write(tmp_path / "s.extxyz", structures)
    with ase.db.connect(tmp_path / "s.db") as db:
        for atoms in structures:
            db.write(atoms)
    for name in ("s.extxyz", "s.db"):
        back = read_structures(tmp_path / name)
        assert len(back) == 4
        np.testing.assert_allclose(back[2].get_forces(), structures[2].get_forces())
    h5 = write_store(tmp_path / "s.h5", structures)
    assert len(open_dataset(h5)) == 4
    (tmp_path / "junk.xyz").write_text("not a structure\n")
    with pytest.raises(DataError, match="junk.xyz"):
        read_structures(tmp_path / "junk.xyz")
    unlabelled = bulk("Cu")
    ase.io.write(tmp_path / "nolab.extxyz", unlabelled)
    with pytest.raises(DataError, match="structure 0: missing label"):
        read_structures(tmp_path / "nolab.extxyz")


def test_aselmdb(tmp_path):
    pytest.importorskip("ase_db_backends")
    structures = _labelled(2)
    with ase.db.connect(str(tmp_path / "s.aselmdb"), type="aselmdb") as db:
        for atoms in structures:
            db.write(atoms)
    back = read_structures(tmp_path / "s.aselmdb")
    np.testing.assert_allclose(back[1].get_forces(), structures[1].get_forces())


def test_splits_are_disjoint_deterministic_and_nested():
    split = split_indices(1000, val_size=50, test_size=0.1, seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [850, 50, 100]
    union = np.concatenate(list(split.values()))
    assert len(np.unique(union)) == 1000
    again = split_indices(1000, val_size=50, test_size=0.1, seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    assert np.array_equal(split_indices(1000, 80, 0.1, 3)["test"], split["test"])
    small, large = (set(nested_subset(split["train"], n, seed=3)) for n in (10, 300))
    assert small < large
    with pytest.raises(ValueError):
        nested_subset(split["train"], 851)


def test_summary_of_a_file_equals_the_summary_of_its_store(tmp_path):
    from mlip_scaling.data.summary import dataset_summary

    structures = _labelled(3)
    ase.io.write(tmp_path / "s.extxyz", structures)
    of_file = dataset_summary(tmp_path / "s.extxyz")
    of_store = dataset_summary(write_store(tmp_path / "s.h5", structures))
    assert of_file["with_stress"] == of_store["with_stress"] == 3
    for name in ("structures", "atoms", "elements", "atoms_per_structure"):
        assert of_file[name] == of_store[name], name
    for name in ("energy_per_atom_eV", "force_norm_eV_per_A", "stress_abs_mean_eV_per_A3"):
        np.testing.assert_allclose(of_file[name], of_store[name], rtol=1e-7)  # extxyz text
