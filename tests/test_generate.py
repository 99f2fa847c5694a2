"""Generated structures, resumable labelling, the embedded dataset, mlip-data CLI."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from mlip_scaling.data import generate as gen
from mlip_scaling.data.cli import main
from mlip_scaling.data.embedded import default_data_path
from mlip_scaling.data.oracles import get_oracle
from mlip_scaling.data.store import StructureStore
from mlip_scaling.errors import ConfigError

DEFAULT = default_data_path()
RTOL = 1e-12  # regeneration may differ in the last bits across CPUs' SIMD paths


def assert_same_structure(atoms: Atoms, ref: Atoms, labels: bool = False) -> None:
    """Same species, pbc (exact) and cell, positions and labels (to ~1e-12 relative)."""
    np.testing.assert_array_equal(atoms.numbers, ref.numbers)
    np.testing.assert_array_equal(atoms.pbc, ref.pbc)
    scale = max(1.0, float(np.abs(ref.cell.array).max()))
    np.testing.assert_allclose(atoms.cell.array, ref.cell.array, rtol=RTOL, atol=RTOL * scale)
    np.testing.assert_allclose(atoms.positions, ref.positions, rtol=RTOL, atol=RTOL * scale)
    if not labels:
        return
    e = ref.get_potential_energy()
    assert atoms.get_potential_energy() == pytest.approx(e, rel=RTOL, abs=RTOL)
    forces = ref.get_forces()
    np.testing.assert_allclose(atoms.get_forces(), forces, rtol=RTOL,
                               atol=RTOL * max(1.0, float(np.abs(forces).max())))
    if ref.pbc.all():
        stress = ref.get_stress()
        np.testing.assert_allclose(atoms.get_stress(), stress, rtol=RTOL,
                                   atol=RTOL * max(1e-3, float(np.abs(stress).max())))


def test_structures_are_deterministic_and_diverse():
    recipe = gen.RECIPES["default"]
    first = [gen.make_structure(recipe, k, seed=3) for k in range(60)]
    again = [gen.make_structure(recipe, k, seed=3) for k in (5, 17)]
    for k, (atoms, mode, s) in zip((5, 17), again):
        assert_same_structure(atoms, first[k][0])
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


def test_workers_and_chunking_do_not_change_the_data(tmp_path):
    kwargs = dict(n_structures=5, seed=2, recipe="sw", progress=False)
    one = gen.generate_dataset("sw", out=tmp_path / "one.h5", workers=1, chunk_size=5, **kwargs)
    two = gen.generate_dataset("sw", out=tmp_path / "two.h5", workers=2, chunk_size=2, **kwargs)
    a, b = StructureStore(one), StructureStore(two)
    assert a.metadata["content_hash"] == b.metadata["content_hash"]
    assert len(b) == 5 and a.metadata["oracle"] == "sw"
    assert_same_structure(a.get_atoms(4), b.get_atoms(4), labels=True)
    assert b.has_stress.any()


def test_custom_oracle_recipe_needs_elements():
    with pytest.raises(ConfigError, match="needs --elements"):
        gen.get_recipe("custom", "module:ase.calculators.emt:EMT")
    recipe = gen.get_recipe("custom", "module:ase.calculators.emt:EMT", ["Cu", "Ni"])
    atoms, _, _ = gen.make_structure(recipe, 0)
    assert set(atoms.get_chemical_symbols()) <= {"Cu", "Ni"}


@pytest.mark.skipif(not DEFAULT.exists(), reason="embedded dataset not generated")
def test_embedded_dataset_regenerates():
    store = StructureStore(DEFAULT)
    assert len(store) >= 10_000 and DEFAULT.stat().st_size <= 25e6
    assert store.metadata["oracle"] == "mixed:emt+sw"
    recipe, oracle = gen.RECIPES["default"], get_oracle("mixed:emt+sw")
    for k in range(20):
        atoms = gen.label_structure(*gen.make_structure(recipe, k, seed=0), oracle)
        assert_same_structure(atoms, store.get_atoms(k), labels=True)


def test_cli_generate_info_convert(tmp_path, capsys):
    out = tmp_path / "sw.h5"
    assert main(["generate", "--recipe", "sw", "--structures", "3", "--out", str(out),
                 "--jobs", "1", "--quiet"]) == 0
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
