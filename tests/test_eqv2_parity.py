"""EquiformerV2 ladder: plain (SO(3)-equivariant) by default, parity averaging as an option,
and model files written with the averaged ladder keep loading averaged, with their numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation
from scripts import load_script
from test_model_physics import _predict

from mlip_scaling import keys
from mlip_scaling.checkpoint import load_checkpoint, potential_from_dict, save_potential
from mlip_scaling.models import registry
from mlip_scaling.models.equiformer_v2.presets import EQV2_PRESETS
from mlip_scaling.models.potential import Potential

LADDER = [name for name in EQV2_PRESETS if name not in ("eqv2-S", "eqv2-M", "eqv2-L")]


def _bench():
    return load_script("benchmarks/bench_eqv2.py")


def _potential(**overrides) -> Potential:
    """eqv2-1.5k with seed-0 weights, float64, outputs scaled to a physical magnitude."""
    cfg = {**EQV2_PRESETS["eqv2-1.5k"], **overrides}
    torch.manual_seed(0)
    model = registry.build_model("eqv2", cfg)
    return Potential(model, "eqv2", cfg, species=[13, 28, 29], scale=1e4).double().eval()


def _alloy() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.cell[1] += [0.3, 0.0, 0.2]  # triclinic
    atoms.numbers[[1, 2]] = [28, 13]
    atoms.rattle(0.15, seed=0)
    return atoms


def _mapped(atoms: Atoms, matrix: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.positions = atoms.positions @ matrix.T
    out.cell = atoms.cell.array @ matrix.T
    return out


def test_ladder_presets_are_plain_and_the_config_default_unchanged():
    assert all(EQV2_PRESETS[name]["parity_average"] is False for name in LADDER)
    assert len(LADDER) >= 8
    cfg = {k: v for k, v in EQV2_PRESETS["eqv2-1.5k"].items() if k != "parity_average"}
    assert registry.build_model("eqv2", cfg).parity_average  # files without the key: averaged
    assert not registry.build_model("eqv2", EQV2_PRESETS["eqv2-1.5k"]).parity_average


def test_plain_ladder_is_so3_equivariant_and_not_inversion_invariant():
    # the preset on a 16-point S² grid: exact quadrature of its activations (the minimal
    # grid of lmax 2 leaves ~1e-4 of the force scale, which would hide the test's point)
    pot = _potential(grid_resolution=16)
    atoms = _alloy()
    ref = _predict(pot, atoms)
    assert np.abs(ref[keys.FORCES]).max() > 1e-3
    fmax = np.abs(ref[keys.FORCES]).max()
    assert fmax > 1e-3
    q = Rotation.random(random_state=1).as_matrix()
    rot = _predict(pot, _mapped(atoms, q))
    np.testing.assert_allclose(rot[keys.ENERGY], ref[keys.ENERGY], rtol=1e-12)
    np.testing.assert_allclose(rot[keys.FORCES], ref[keys.FORCES] @ q.T, rtol=0, atol=1e-9 * fmax)
    smax = np.abs(ref[keys.STRESS]).max()
    np.testing.assert_allclose(rot[keys.STRESS][0], q @ ref[keys.STRESS][0] @ q.T,
                               rtol=0, atol=1e-9 * smax)
    inv = _predict(pot, _mapped(atoms, -np.eye(3)))  # chiral: far beyond the quadrature error
    assert np.abs(inv[keys.FORCES] + ref[keys.FORCES]).max() > 1e-3 * fmax


@pytest.mark.parametrize("kind", ["inversion", "mirror"])
def test_parity_average_option_is_inversion_invariant(kind):
    pot = _potential(parity_average=True, grid_resolution=16)
    atoms = _alloy()
    q = -np.eye(3) if kind == "inversion" else np.diag([1.0, -1.0, 1.0])
    ref, out = _predict(pot, atoms), _predict(pot, _mapped(atoms, q))
    fmax = np.abs(ref[keys.FORCES]).max()
    np.testing.assert_allclose(out[keys.ENERGY], ref[keys.ENERGY], rtol=1e-12)
    np.testing.assert_allclose(out[keys.FORCES], ref[keys.FORCES] @ q.T, rtol=0, atol=1e-9 * fmax)


@pytest.mark.parametrize("stored_key", [True, False], ids=["key-stored", "key-absent"])
def test_averaged_model_file_loads_averaged_with_the_reference_numbers(tmp_path, stored_key):
    """A file written by the averaged ladder (config holding ``parity_average: true``, or an
    older one without the key) loads averaged and reproduces the float64 reference that
    was stored before the ladder became plain."""
    bench = _bench()
    stored = torch.load(bench.REFERENCE, weights_only=True)["eqv2-5.6k"]
    cfg = {**EQV2_PRESETS["eqv2-5.6k"], "parity_average": True}
    if not stored_key:
        del cfg["parity_average"]
    model = registry.build_model("eqv2", cfg)
    pot = Potential(model, "eqv2", cfg, species=bench.SPECIES).double()
    with torch.no_grad():
        params = dict(pot.named_parameters())
        for name, value in stored["weights"].items():
            params[name].copy_(value)
    path = save_potential(tmp_path / "old.pt", pot)
    loaded = potential_from_dict(load_checkpoint(path)).double()
    assert loaded.model.parity_average
    got = bench.predict(loaded, bench.reference_structures())
    for key, want in stored["batch"].items():
        scale = want.abs().max().item()
        torch.testing.assert_close(got[key], want, rtol=0, atol=1e-10 * scale)


def test_bench_parity_mirror_error_separates_averaged_from_plain():
    bench = load_script("benchmarks/bench_parity.py")
    structures = [_alloy(), bulk("Ni", "fcc", a=3.5) * (2, 1, 1)]
    structures[1].rattle(0.1, seed=2)
    e_avg, f_avg = bench.mirror_error(_potential(parity_average=True), structures)
    e_plain, f_plain = bench.mirror_error(_potential(grid_resolution=16), structures)
    assert e_avg < 1e-12 and f_avg < 1e-12
    assert f_plain > 1e-7
    assert bench.mean_se([1.0, 2.0, 3.0]) == "2.00 ± 0.58" and bench.mean_se([270, 270]) == "270"
