"""Oracles, generated structures, resumable labelling, the embedded dataset, mlip-data CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from mlip_scaling.data import generate as gen
from mlip_scaling.data.cli import main
from mlip_scaling.data.oracles import get_oracle
from mlip_scaling.data.store import StructureStore
from mlip_scaling.errors import ConfigError

DEFAULT = Path(__file__).resolve().parents[1] / "data" / "default.h5"


@pytest.mark.parametrize("name", ["emt", "sw", "tersoff", "tersoff:Si", "mixed:emt+sw"])
def test_oracles_label_structures(name):
    atoms = bulk("Cu", cubic=True) if name == "emt" else bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, seed=0)
    atoms.calc = get_oracle(name)
    forces = atoms.get_forces()
    assert np.isfinite(atoms.get_potential_energy()) and forces.shape == (len(atoms), 3)
    assert np.abs(forces.sum(axis=0)).max() < 1e-8  # Newton's third law


def test_oracle_errors():
    with pytest.raises(ConfigError, match="unknown oracle 'nope'"):
        get_oracle("nope")
    mixed = bulk("Cu") + bulk("Si")
    mixed.calc = get_oracle("mixed:emt+sw")
    with pytest.raises(ConfigError, match="metal-only"):
        mixed.get_potential_energy()
    with pytest.raises(ConfigError, match="no such potential file"):
        get_oracle("eam:/nonexistent.eam.alloy")


def test_structures_are_deterministic_and_diverse():
    recipe = gen.RECIPES["default"]
    first = [gen.make_structure(recipe, k, seed=3) for k in range(60)]
    again = [gen.make_structure(recipe, k, seed=3) for k in (5, 17)]
    for k, (atoms, mode, s) in zip((5, 17), again):
        np.testing.assert_array_equal(atoms.positions, first[k][0].positions)
        assert (mode, s) == first[k][1:]
    sizes = [len(a) for a, _, _ in first]
    assert min(sizes) <= 4 and max(sizes) >= 32
    assert {m for _, m, _ in first} == {"bulk", "vacancy", "slab", "md", "relax"}
    assert any("Si" in a.get_chemical_symbols() for a, _, _ in first)


def test_resumable_chunks_give_identical_content(tmp_path):
    kwargs = dict(n_structures=6, seed=1, workers=1, recipe="emt", progress=False,
                  chunk_size=2)
    whole = StructureStore(gen.generate_dataset("emt", out=tmp_path / "a.h5", **kwargs))
    # an interrupted run: only the first chunk finished before the crash
    parts = tmp_path / "b.h5.parts"
    parts.mkdir()
    gen._label_chunk((gen.RECIPES["emt"], 1, 0, 2, str(parts / "chunk-00000.h5")))
    (parts / "chunk-00001.h5").write_bytes(b"half-written")
    resumed = StructureStore(gen.generate_dataset("emt", out=tmp_path / "b.h5", **kwargs))
    assert resumed.metadata["content_hash"] == whole.metadata["content_hash"]
    assert not parts.exists()


@pytest.mark.skipif(not DEFAULT.exists(), reason="embedded dataset not generated")
def test_embedded_dataset_regenerates():
    store = StructureStore(DEFAULT)
    assert len(store) >= 10_000 and DEFAULT.stat().st_size <= 25e6
    assert store.metadata["oracle"] == "mixed:emt+sw"
    recipe, oracle = gen.RECIPES["default"], get_oracle("mixed:emt+sw")
    for k in range(8):
        atoms = gen.label_structure(*gen.make_structure(recipe, k, seed=0), oracle)
        ref = store.get_atoms(k)
        np.testing.assert_array_equal(atoms.positions, ref.positions)
        np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), rtol=0, atol=1e-12)
        assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(),
                                                             abs=1e-12)


def test_cli_generate_info_convert(tmp_path, capsys):
    out = tmp_path / "sw.h5"
    assert main(["generate", "--recipe", "sw", "--structures", "3", "--out", str(out),
                 "--workers", "1", "--quiet"]) == 0
    assert main(["info", str(out)]) == 0
    assert "structures" in capsys.readouterr().out
    assert main(["convert", str(out), str(tmp_path / "sw.extxyz")]) == 0
    assert main(["convert", str(tmp_path / "sw.extxyz"), str(tmp_path / "back.h5")]) == 0
    assert len(StructureStore(tmp_path / "back.h5")) == 3
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(out), str(tmp_path / "back.h5")])
    assert exc.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["info", str(tmp_path / "missing.h5")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.h5" in err[0]
