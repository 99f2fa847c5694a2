"""Bad geometry -> a one-line DataError naming the structure, never NaN, SIGFPE or many GB.

The cases that crashed the process (SIGFPE in the neighbour-list library) or allocated
~4 GB run in a child process with an address-space limit, so that a regression fails the
test instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from test_calculator import rattled_cu, smooth_potential

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.data.atomic_data import from_atoms
from mlip_scaling.data.neighbors import (
    MAX_NEIGHBORS,
    NeighborListTransform,
    check_geometry,
    neighbor_list,
)
from mlip_scaling.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def _error(atoms: Atoms) -> str:
    atoms.calc = ScalingCalculator(smooth_potential(), dtype="float64")
    with pytest.raises(DataError) as err:
        atoms.get_potential_energy()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_atoms_at_distance_zero():
    atoms = Atoms("Cu2", positions=[[1, 1, 1], [1, 1, 1]], cell=[10, 10, 10], pbc=True)
    assert _error(atoms) == ("structure Cu2: atoms 0 and 1 are 0 Å apart (minimum 0.1 Å): "
                             "overlapping atoms")


def test_thin_periodic_cell():
    atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=[5, 5, 0.1], pbc=True)
    message = _error(atoms)
    assert message.startswith("structure Cu: the periodic cell is 0.1 Å thick along cell "
                              "vector 2")


def test_sheared_cell_height_not_vector_length():
    # every vector is >= 3 Å long, but the faces spanned by b, c are 0.3 Å apart
    cell = [[3.0, 0, 0], [2.9, 0.3, 0], [0, 0, 3.0]]
    message = _error(Atoms("Cu", positions=[[0, 0, 0]], cell=cell, pbc=True))
    assert "0.3 Å thick" in message


def test_flat_slab_cell_names_the_zero_vector():
    flat = Atoms("Cu2", positions=[[0, 0, 0], [1.5, 1.5, 0]], cell=[4, 4, 0], pbc=True)
    assert "along cell vector 2" in _error(flat)


def test_overlap_found_while_the_neighbour_list_is_reused():
    """Atoms that meet within the skin (no rebuild) are still caught."""
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0.3, 0, 0]])
    calc = ScalingCalculator(smooth_potential(), dtype="float64", skin=0.5)
    atoms.calc = calc
    atoms.get_potential_energy()
    atoms.positions = [[0.12, 0, 0], [0.18, 0, 0]]  # each moved 0.12 Å < skin / 2
    with pytest.raises(DataError, match="atoms 0 and 1 are 0.06 Å apart"):
        atoms.get_potential_energy()
    assert calc._neighbors.builds == 1


def test_predict_names_index_and_formula():
    bad = Atoms("CuH", positions=[[0, 0, 0], [0, 0, 0.01]])
    calc = ScalingCalculator(smooth_potential(), dtype="float64")
    with pytest.raises(DataError, match=r"^structure 1 \(HCu\): atoms 0 and 1 are 0.01 Å"):
        calc.predict([rattled_cu(), bad])


def test_too_many_neighbours_estimated_before_building():
    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 10, (20_000, 3))
    with pytest.raises(DataError, match="neighbours per atom within 5 Å") as err:
        check_geometry(positions, np.eye(3) * 10, np.ones(3, bool), 5.0, "structure 7")
    assert str(err.value).startswith("structure 7: about 1.05e+04")
    assert MAX_NEIGHBORS < 1.05e4


@pytest.mark.parametrize("pbc", [(False, False, False), (True, True, False),
                                 (True, False, False)])
def test_span_of_non_periodic_directions(pbc):
    cell = np.eye(3) * 10
    far = np.array([[0.0, 0, 0], [0, 0, 1e6]])
    with pytest.raises(DataError, match="span 1e.06 Å along a non-periodic direction"):
        neighbor_list(far, cell, pbc, 5.0, "s")
    # far along a periodic direction is fine (an unwrapped trajectory)
    along_x = np.array([[0.0, 0, 0], [1e6 + 1.0, 0, 0]])
    edge_index, _ = neighbor_list(along_x, cell, (True, False, False), 5.0, "s")
    assert edge_index.shape[1] > 0


def test_sound_structures_pass():
    """Molecules, slabs, wires, small and skewed cells of real materials are accepted."""
    slab = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    slab.pbc = (True, True, False)
    wire = slab.copy()
    wire.pbc = (True, False, False)
    primitive = bulk("Si", "diamond", a=5.43)
    for atoms in (molecule("CH4"), slab, wire, primitive, bulk("Cu", "bcc", a=2.87)):
        check_geometry(atoms.positions, atoms.cell.array, atoms.pbc, 12.0, "s")
        edge_index, _ = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 5.0, "s")
        assert edge_index.shape[1] > 0


def test_training_transform_names_the_structure():
    data = from_atoms(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]], cell=[9, 9, 9],
                            pbc=True), labels=False)
    with pytest.raises(DataError, match="^data.h5: structure 4: atoms 0 and 1"):
        NeighborListTransform(5.0)(data, where="data.h5: structure 4")


CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
from ase import Atoms
from test_calculator import smooth_potential
from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.errors import DataError
cases = {
    "span": Atoms("Cu2", positions=[[0, 0, 0], [1e6, 0, 0]]),
    "tiny_cell": Atoms("Cu", positions=[[0, 0, 0]], cell=[5, 5, 1e-6], pbc=True),
    "span_slab": Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 1e6]], cell=[10, 10, 0],
                       pbc=[True, True, False]),
}
for name, atoms in cases.items():
    atoms.calc = ScalingCalculator(smooth_potential(), dtype="float64")
    try:
        atoms.get_forces()
        print(json.dumps([name, "no error"]), flush=True)
    except DataError as exc:
        print(json.dumps([name, str(exc)]), flush=True)
"""


def test_crashing_and_memory_hungry_cases_in_a_limited_child():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}): {proc.stderr[-500:]}"
    results = dict(json.loads(line) for line in proc.stdout.splitlines())
    assert results["span"].startswith("structure Cu2: the atoms span 1e+06 Å")
    assert results["tiny_cell"].startswith("structure Cu: the periodic cell is 1e-06 Å thick")
    assert results["span_slab"].startswith("structure Cu2: the atoms span 1e+06 Å")
