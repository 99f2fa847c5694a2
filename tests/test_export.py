"""``mlip-scaling export``: torch.export programs equal the eager potential."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ase.build import bulk
from numpy.testing import assert_allclose

from mlip_scaling import keys
from mlip_scaling.checkpoint import load_potential, save_potential
from mlip_scaling.data.atomic_data import compute_edge_vectors, from_atoms
from mlip_scaling.data.neighbors import neighbor_list
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.presets import PRESETS
from mlip_scaling.models.registry import build_model
from mlip_scaling.scaling.cli import main

FAMILIES = ["transformer-2.3k", "eqv2-1.5k", "bpnn-1.2k", "gemnet-1.3k"]


def _structures() -> list:
    """Two periodic Cu-Ni structures of different atom counts (4 and 12)."""
    small = bulk("Cu", "fcc", a=3.6, cubic=True)
    large = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((3, 1, 1))
    for atoms, seed in ((small, 1), (large, 2)):
        atoms.numbers[0] = 28
        atoms.rattle(0.1, seed=seed)
        atoms.cell[0, 1] = 0.2
    return [small, large]


def _inputs(atoms, cutoff: float) -> list[torch.Tensor]:
    """Program inputs of one structure in float64."""
    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
    f64 = torch.float64
    return [
        torch.tensor(atoms.positions, dtype=f64), torch.tensor(atoms.cell[:], dtype=f64),
        torch.tensor(atoms.numbers, dtype=torch.long), torch.as_tensor(edge_index),
        torch.as_tensor(shifts).to(f64), torch.zeros(3, 3, dtype=f64),
    ]


def _run_program(module, inputs: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Energy, forces, stress of the loaded program by autograd (the documented recipe)."""
    inputs = [x.clone() for x in inputs]
    inputs[0].requires_grad_(True)
    inputs[-1].requires_grad_(True)
    energy, _ = module(*inputs)
    d_pos, d_strain = torch.autograd.grad(energy, [inputs[0], inputs[-1]])
    stress = d_strain / torch.linalg.det(inputs[1]).abs()
    return {"energy": energy.detach().numpy(), "forces": -d_pos.numpy(),
            "stress": stress.numpy()}


def _eager(potential: Potential, atoms, inputs: list[torch.Tensor]) -> dict[str, np.ndarray]:
    data = from_atoms(atoms, labels=False)
    data[keys.EDGE_INDEX], data[keys.EDGE_CELL_SHIFT] = inputs[3], inputs[4]
    out = potential(data)
    return {"energy": out[keys.ENERGY][0].detach().numpy(),
            "forces": out[keys.FORCES].detach().numpy(),
            "stress": out[keys.STRESS][0].detach().numpy()}


@pytest.fixture(params=FAMILIES)
def exported(request, tmp_path):
    """(eager float64 potential, path of its float64 .pt2 written by the CLI)."""
    family, config = PRESETS[request.param]
    torch.manual_seed(0)
    potential = Potential(build_model(family, config), family, config, [28, 29],
                          {28: -5.5, 29: -3.7}, scale=0.3, shift=0.1)
    model = save_potential(tmp_path / "model.pt", potential)
    out = tmp_path / "model.pt2"
    assert main(["export", str(model), "--out", str(out), "--dtype", "float64", "-q"]) == 0
    return load_potential(model, dtype=torch.float64), out


def _assert_same(got: dict, want: dict) -> None:
    scale = max(np.abs(want["forces"]).max(), np.abs(want["stress"]).max())
    assert_allclose(got["energy"], want["energy"], rtol=1e-6)
    assert_allclose(got["forces"], want["forces"], rtol=1e-6, atol=1e-6 * scale)
    assert_allclose(got["stress"], want["stress"], rtol=1e-6, atol=1e-6 * scale)


def test_exported_equals_eager_on_two_sizes(exported):
    potential, path = exported
    extra = {"metadata.json": ""}
    module = torch.export.load(path, extra_files=extra).module()
    meta = json.loads(extra["metadata.json"])
    assert meta["dtype"] == "float64" and meta["species"] == [28, 29]
    sizes = set()
    for atoms in _structures():
        inputs = _inputs(atoms, meta["cutoff"])
        sizes.add((len(atoms), inputs[3].shape[1]))
        _assert_same(_run_program(module, inputs), _eager(potential, atoms, inputs))
    assert len({n for n, _ in sizes}) == 2 and len({e for _, e in sizes}) == 2


_PLAIN_TORCH = textwrap.dedent("""
    import json, sys
    import torch
    program = torch.export.load(sys.argv[1]).module()
    inputs = torch.load(sys.argv[2])
    inputs[0].requires_grad_(True)
    inputs[-1].requires_grad_(True)
    energy, _ = program(*inputs)
    d_pos, d_strain = torch.autograd.grad(energy, [inputs[0], inputs[-1]])
    stress = d_strain / torch.linalg.det(inputs[1]).abs()
    print(json.dumps({"imported": sorted(m for m in sys.modules if m.startswith("mlip_scaling")),
                      "energy": energy.item(), "forces": (-d_pos).tolist(),
                      "stress": stress.tolist()}))
""")


def test_program_runs_without_the_package(exported, tmp_path):
    potential, path = exported
    atoms = _structures()[1]
    inputs = _inputs(atoms, potential.cutoff)
    torch.save(inputs, tmp_path / "inputs.pt")
    script = tmp_path / "plain.py"
    script.write_text(_PLAIN_TORCH)
    done = subprocess.run([sys.executable, "-I", str(script), str(path),
                           str(tmp_path / "inputs.pt")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["imported"] == []
    got = {k: np.asarray(got[k]) for k in ("energy", "forces", "stress")}
    _assert_same(got, _eager(potential, atoms, inputs))


def test_export_refuses_a_bad_model_file(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(SystemExit) as exc:
        main(["export", str(bad), "--out", str(tmp_path / "bad.pt2")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.pt" in err
    assert not (tmp_path / "bad.pt2").exists()


@pytest.mark.parametrize("preset", FAMILIES)
def test_compiled_model_has_no_graph_breaks(preset):
    """EquiformerV2 selects edges within its cutoff (an output of data-dependent size):
    dynamo captures that only with ``capture_dynamic_output_shape_ops``."""
    family, config = PRESETS[preset]
    model = build_model(family, config).double().eval()
    atoms = _structures()[0]
    inputs = _inputs(atoms, config["cutoff"])
    data = from_atoms(atoms, labels=False)
    data[keys.EDGE_INDEX], data[keys.EDGE_CELL_SHIFT] = inputs[3], inputs[4]
    data[keys.BATCH] = torch.zeros(len(atoms), dtype=torch.long)
    data = compute_edge_vectors(data)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        explanation = torch._dynamo.explain(model)(data)
    assert explanation.graph_break_count == 0, explanation.break_reasons
