"""ScalingCalculator with other tools: neighbour-list reuse in NEB and cell relaxations,
pymatgen structures, DFT-D3 dispersion, and serving over ASE's socket protocol."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import units
from ase.build import add_adsorbate, fcc100
from ase.filters import FrechetCellFilter
from ase.mep import NEB
from ase.optimize import FIRE
from test_calculator import methane, rattled_cu, smooth_potential

from mlip_scaling import relax
from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.calculators.inference import sorted_neighbors
from mlip_scaling.calculators.neighbor_cache import NeighborCache
from mlip_scaling.errors import DataError


def _calc(**kwargs) -> ScalingCalculator:
    return ScalingCalculator(smooth_potential(), dtype="float64", **kwargs)


def _neb_endpoints():
    slab = fcc100("Cu", (3, 3, 3), vacuum=6.0, a=3.65)
    start, end = slab.copy(), slab.copy()
    add_adsorbate(start, "Cu", 1.7, "hollow")
    add_adsorbate(end, "Cu", 1.7, "hollow")
    end.positions[-1, 0] += 3.65 / 2**0.5  # the next hollow site
    return start, end


def _run_neb(shared: bool, steps: int = 15) -> tuple[int, np.ndarray]:
    """Rebuilds over all calculators and the final image energies of a 5-image band."""
    start, end = _neb_endpoints()
    images = [start, *(start.copy() for _ in range(3)), end]
    one = _calc()
    calcs = [one] if shared else [_calc() for _ in images]
    for k, image in enumerate(images):
        image.calc = one if shared else calcs[k]
    band = NEB(images, allow_shared_calculator=shared, method="improvedtangent")
    band.interpolate()
    FIRE(band, logfile=None).run(fmax=0.05, steps=steps)
    energies = np.array([image.get_potential_energy() for image in images[1:-1]])
    return sum(c._neighbors.builds for c in calcs), energies


def test_shared_calculator_in_neb_keeps_one_list_per_image(monkeypatch):
    evaluations = []
    inputs = ScalingCalculator._data
    monkeypatch.setattr(ScalingCalculator, "_data",
                        lambda self, atoms: evaluations.append(1) or inputs(self, atoms))
    shared_builds, shared_energies = _run_neb(shared=True)
    shared_evaluations = len(evaluations)
    copied_builds, copied_energies = _run_neb(shared=False)
    # before: the one list thrashed between images (310 builds and 310 model evaluations
    # in 20 steps, against 6 and 65 with one calculator per image)
    assert shared_builds <= copied_builds
    assert shared_evaluations <= len(evaluations) - shared_evaluations
    np.testing.assert_allclose(shared_energies, copied_energies, rtol=1e-12)


def test_cell_relaxation_reuses_the_list_and_matches_a_fresh_one():
    atoms = rattled_cu(strain=0.03)
    calc = _calc()
    atoms.calc = calc
    opt = FIRE(FrechetCellFilter(atoms), logfile=None)
    steps = 0
    for _ in opt.irun(fmax=1e-3, steps=1000):
        fresh = atoms.copy()
        fresh.calc = _calc(skin=0.0)
        np.testing.assert_allclose(atoms.get_forces(), fresh.get_forces(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(atoms.get_stress(), fresh.get_stress(), rtol=0, atol=1e-10)
        steps += 1
    assert steps > 40 and np.abs(atoms.get_stress()).max() < 1e-3
    # before: one build per step (96 builds in 95 steps)
    assert calc._neighbors.builds <= 5


def test_results_kept_per_structure_are_never_stale():
    calc = _calc()
    first, second = rattled_cu(seed=1), rattled_cu(seed=2)
    first.calc = second.calc = calc
    e1, e2 = first.get_potential_energy(), second.get_potential_energy()
    f1 = first.get_forces()  # served from the kept results: no new evaluation
    assert calc._results.hits == 1 and e1 != pytest.approx(e2, rel=1e-6)
    alone = rattled_cu(seed=1)
    alone.calc = _calc()
    np.testing.assert_allclose(f1, alone.get_forces(), rtol=1e-14, atol=1e-14)
    stress = first.get_stress()  # not in the kept results: evaluated
    assert calc._results.hits == 1
    np.testing.assert_allclose(stress, alone.get_stress(), rtol=1e-14, atol=1e-14)
    first.positions[0, 0] += 1e-9  # a different structure: evaluated again
    moved = first.copy()
    moved.calc = _calc()
    assert first.get_potential_energy() == pytest.approx(moved.get_potential_energy(),
                                                         rel=1e-14)
    assert first.get_potential_energy() != e1 and calc._results.hits == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cache_equals_fresh_lists_under_strain_and_moves(seed):
    rng = np.random.default_rng(seed)
    atoms = rattled_cu(repeat=(2, 2, 2), strain=0.0)
    base_cell, base_scaled = atoms.cell.array.copy(), atoms.get_scaled_positions()
    cache = NeighborCache(5.0, 0.5, sorted_neighbors)
    reused, strain, moves = 0, np.zeros((3, 3)), np.zeros(base_scaled.shape)
    for _ in range(40):  # random walks of the cell (up to ~10 %) and of the atoms
        strain += rng.normal(scale=0.008, size=(3, 3))
        moves += rng.normal(scale=0.03, size=moves.shape)
        cell = base_cell @ (np.eye(3) + 0.5 * (strain + strain.T))
        positions = base_scaled @ cell + moves
        builds = cache.builds
        got = cache(positions, cell, atoms.pbc, atoms.numbers)
        want = sorted_neighbors(positions, cell, atoms.pbc, 5.0)
        # integer pairs and image shifts: the same list exactly, not a float comparison
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        reused += cache.builds == builds
    assert 0 < reused < 39  # some lists were reused, larger strains forced new ones


def test_cache_drops_the_oldest_lists_beyond_its_limits():
    cache = NeighborCache(5.0, 0.5, sorted_neighbors, max_entries=3)
    structures = [rattled_cu(seed=seed) for seed in range(5)]
    for seed, atoms in enumerate(structures):
        atoms.rattle(0.4, seed=seed)  # far apart: no list serves another structure
    for atoms in structures:
        cache(atoms.positions, atoms.cell.array, atoms.pbc, atoms.numbers)
    assert len(cache.entries) == 3 and cache.builds == 5
    last = structures[-1]
    cache(last.positions, last.cell.array, last.pbc, last.numbers)
    assert cache.builds == 5  # the newest is kept
    small = NeighborCache(5.0, 0.5, sorted_neighbors, max_pairs=1)
    for atoms in structures[:2]:
        small(atoms.positions, atoms.cell.array, atoms.pbc, atoms.numbers)
    assert len(small.entries) == 1  # over the pair budget: only the newest list stays


def _structure(atoms):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(atoms.cell.array), atoms.get_chemical_symbols(), atoms.positions,
                     coords_are_cartesian=True)


def test_predict_accepts_pymatgen_structures_and_molecules():
    from pymatgen.core import Molecule

    crystal, mol = rattled_cu(strain=0.01), methane()
    structure = _structure(crystal)
    molecule = Molecule(mol.get_chemical_symbols(), mol.positions)
    calc = _calc()
    got = calc.predict([structure, molecule, crystal])
    want = calc.predict([crystal, mol, crystal])
    for g, w in zip(got, want):
        assert sorted(g) == sorted(w)
        for key in w:
            np.testing.assert_allclose(g[key], w[key], rtol=1e-12, atol=1e-12)
    assert "stress" in got[0] and "stress" not in got[1]  # a Molecule has no cell


def test_predict_names_an_object_it_cannot_use():
    with pytest.raises(DataError, match=r"structure 1: expected ase.Atoms or a pymatgen "
                                        r"Structure/Molecule, got builtins.str"):
        _calc().predict([rattled_cu(), "Cu.cif"])


def test_relax_returns_a_relaxed_pymatgen_structure():
    from pymatgen.core import Structure

    structure = _structure(rattled_cu(strain=0.03))
    result = relax(structure, _calc(), fmax=1e-3, steps=1000)
    final = result["final_structure"]
    assert isinstance(final, Structure) and result["converged"]
    assert final.volume != pytest.approx(structure.volume, rel=1e-3)
    assert np.abs(result["forces"]).max() < 1e-3 and np.abs(result["stress"]).max() < 1e-3
    assert structure.volume == pytest.approx(_structure(rattled_cu(strain=0.03)).volume)
    again = _calc().predict([final])[0]  # the returned structure is the relaxed one
    assert float(again["energy"]) == pytest.approx(result["energy"], abs=1e-9)


def test_relax_keeps_the_cell_when_asked_and_takes_molecules():
    from pymatgen.core import Molecule

    atoms = rattled_cu(strain=0.03)
    result = relax(atoms, _calc(), fmax=1e-2, relax_cell=False)
    np.testing.assert_allclose(result["final_structure"].cell.array, atoms.cell.array)
    mol = methane()
    out = relax(Molecule(mol.get_chemical_symbols(), mol.positions), _calc(), fmax=5e-3,
                steps=1000)
    assert isinstance(out["final_structure"], Molecule) and out["converged"]
    assert "stress" not in out


def _bilayer(spacing: float):
    """AB-stacked graphite (4 atoms), layers ``spacing`` Å apart."""
    from ase.build import graphene

    layer = graphene(a=2.46, vacuum=0.0)
    layer.cell[2, 2] = 2 * spacing
    top = layer.copy()
    top.positions += [0.0, 2.46 / 3**0.5, spacing]  # B stacking: shifted by one bond
    bilayer = layer + top
    bilayer.pbc = True
    return bilayer


def test_d3_adds_the_dispersion_energy_on_a_layered_structure():
    pytest.importorskip("dftd3.ase")
    from mlip_scaling.calculators.dispersion import d3_calculator, with_d3

    atoms, alone, model = _bilayer(3.35), _bilayer(3.35), _bilayer(3.35)
    atoms.calc = with_d3(_calc(), method="PBE")
    alone.calc, model.calc = d3_calculator("PBE"), _calc()
    for name in ("get_potential_energy", "get_forces", "get_stress"):
        total = getattr(atoms, name)()
        np.testing.assert_allclose(total, getattr(model, name)() + getattr(alone, name)(),
                                   rtol=1e-12, atol=1e-12)
    apart = _bilayer(12.0)
    apart.calc = d3_calculator("PBE")
    binding = (alone.get_potential_energy() - apart.get_potential_energy()) / len(atoms)
    assert -0.08 < binding < -0.02  # eV/atom: D3(BJ)-PBE binds the layers by ~68 meV/atom
    assert alone.get_stress()[2] > 0  # the layers pull together: dE/dstrain_zz > 0


def test_d3_without_the_package_says_how_to_install(monkeypatch):
    import sys

    from mlip_scaling.calculators.dispersion import with_d3
    from mlip_scaling.errors import ConfigError

    monkeypatch.setitem(sys.modules, "dftd3.ase", None)
    with pytest.raises(ConfigError, match=r"needs the dftd3 package: pip install "
                                          r"'mlip-scaling\[dispersion\]'"):
        with_d3(_calc())


@pytest.fixture
def socket_name():
    """A fresh UNIX socket name; its file /tmp/ipi_NAME is removed afterwards (i-PI
    leaves it behind)."""
    name = f"mlip-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    Path(f"/tmp/ipi_{name}").unlink(missing_ok=True)


def test_model_served_over_ase_socketio_runs_md(tmp_path, socket_name):
    from ase.calculators.socketio import SocketIOCalculator
    from ase.md.verlet import VelocityVerlet
    from test_committee import cu_cell, random_model

    model = random_model(tmp_path / "model.pt", seed=0)
    atoms = cu_cell(seed=1)
    ase.io.write(tmp_path / "start.xyz", atoms)
    name = socket_name
    direct = ScalingCalculator(model, dtype="float64")
    with SocketIOCalculator(unixsocket=name, timeout=120) as server:
        client = subprocess.Popen(
            [sys.executable, "-m", "mlip_scaling.calculators.cli", str(model),
             str(tmp_path / "start.xyz"), "--unix", name, "--device", "cpu"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        atoms.calc = server
        probe = atoms.copy()
        probe.calc = direct
        dyn = VelocityVerlet(atoms, timestep=1 * units.fs)
        for _ in range(5):
            dyn.run(1)
            probe.positions = atoms.positions
            assert atoms.get_potential_energy() == pytest.approx(
                probe.get_potential_energy(), rel=1e-10)
            np.testing.assert_allclose(atoms.get_forces(), probe.get_forces(), atol=1e-10)
            np.testing.assert_allclose(atoms.get_stress(), probe.get_stress(), atol=1e-10)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    assert out.startswith("served ")


def test_socket_client_without_a_server_is_one_line(tmp_path, socket_name, capsys):
    from test_committee import random_model

    from mlip_scaling.calculators.cli import main

    ase.io.write(tmp_path / "start.xyz", rattled_cu())
    model = random_model(tmp_path / "model.pt", seed=0)
    with pytest.raises(SystemExit) as exit_:
        main([str(model), str(tmp_path / "start.xyz"), "--unix", socket_name, "--wait", "0.3"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert re.fullmatch(r"error: no socket server at /tmp/ipi_mlip-test-\S+ after 0.3 s "
                        r"\(.*\); start the server \(i-PI\) first\n", err)


_IPI_SERVER = """
import json, sys
import ase.io
from ase import units
from ipi.scripting import InteractiveSimulation, forcefield_xml, motion_nvt_xml, simulation_xml

atoms = ase.io.read(sys.argv[1])
xml = simulation_xml(atoms, forcefield_xml("mlip", mode="unix", address=sys.argv[2]),
                     motion_nvt_xml(timestep=1.0 * units.fs), temperature=300.0)
sim = InteractiveSimulation(xml)
record = []
for _ in range(int(sys.argv[3])):
    sim.run(1)
    frame = sim.get_structures()  # "ase" units: Å, eV, eV/Å, K
    record.append({"positions": frame.positions.tolist(), "cell": frame.cell.tolist(),
                   "forces": frame.get_forces().tolist(),
                   "potential": float(sim.properties("potential")),
                   "temperature": float(sim.properties("temperature"))})
json.dump(record, open(sys.argv[4], "w"))
"""


def test_ipi_drives_nvt_with_the_served_model(tmp_path, socket_name):
    pytest.importorskip("ipi")
    from mlip_scaling.calculators.socket_serve import serve

    atoms = rattled_cu(strain=0.0)
    ase.io.write(tmp_path / "start.xyz", atoms)
    (tmp_path / "server.py").write_text(_IPI_SERVER)
    name, steps = socket_name, 8
    server = subprocess.Popen(
        [sys.executable, str(tmp_path / "server.py"), str(tmp_path / "start.xyz"), name,
         str(steps), str(tmp_path / "record.json")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    served = serve(atoms, _calc(), unixsocket=name, wait=120)
    out, err = server.communicate(timeout=120)
    assert server.returncode == 0, err[-2000:]
    record = json.loads((tmp_path / "record.json").read_text())
    assert len(record) == steps and served >= steps
    check = _calc()
    for frame in record:
        probe = atoms.copy()
        probe.positions, probe.cell = frame["positions"], frame["cell"]
        probe.calc = check
        assert frame["potential"] == pytest.approx(probe.get_potential_energy(), rel=1e-8)
        np.testing.assert_allclose(frame["forces"], probe.get_forces(), atol=1e-8)
    assert all(50 < f["temperature"] < 1000 for f in record)  # K: thermostatted at 300 K


def _labelled_cu(count: int) -> list:
    from ase.build import bulk
    from ase.calculators.emt import EMT

    structures = []
    for seed in range(count):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=seed)
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        structures.append(atoms)
    return structures


def test_convert_writes_files_that_pymatgen_reads(tmp_path):
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifParser

    from mlip_scaling.data.cli import main

    structures = _labelled_cu(3)
    ase.io.write(tmp_path / "cu.extxyz", structures)
    ase.io.write(tmp_path / "one.extxyz", structures[:1])
    # before: the output was extxyz whatever its name, which pymatgen cannot parse as CIF
    assert main(["convert", str(tmp_path / "cu.extxyz"), str(tmp_path / "cu.cif")]) == 0
    parsed = CifParser(tmp_path / "cu.cif").parse_structures(primitive=False)
    assert len(parsed) == 3 and all(s.composition.reduced_formula == "Cu" for s in parsed)
    assert main(["convert", str(tmp_path / "one.extxyz"), str(tmp_path / "POSCAR")]) == 0
    poscar = Structure.from_file(tmp_path / "POSCAR")
    np.testing.assert_allclose(poscar.lattice.matrix, structures[0].cell.array, atol=1e-8)
    np.testing.assert_allclose(poscar.cart_coords, structures[0].positions, atol=1e-6)


def test_convert_to_a_one_structure_format_is_one_line(tmp_path, capsys):
    from mlip_scaling.data.cli import main

    ase.io.write(tmp_path / "cu.extxyz", _labelled_cu(2))
    with pytest.raises(SystemExit) as exit_:
        main(["convert", str(tmp_path / "cu.extxyz"), str(tmp_path / "POSCAR")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert re.fullmatch(r"error: \S+POSCAR: cannot write 2 structures as vasp \(vasp-format "
                        r"can only store 1 Atoms object.\)\n", err)
    assert not (tmp_path / "POSCAR").exists()
