"""ScalingCalculator from model files: round trip, and clear one-line errors on bad files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from test_calculator import rattled_cu, smooth_potential

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.checkpoint import FORMAT, CheckpointError, potential_to_dict, save_potential
from mlip_scaling.models import registry
from mlip_scaling.models.potential import Potential


class MarkerOnUnpickle:
    """Unpickling this object creates a file: proof of code execution at load time."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def pair_family(monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, "pair", "test_calculator:SmoothPair")


@pytest.fixture
def model_file(tmp_path, pair_family) -> Path:
    return save_potential(tmp_path / "pair.pt", smooth_potential(), train={"seed": 0})


def _one_line_error(path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as err:
        ScalingCalculator(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_file_round_trip(model_file, dtype):
    atoms = rattled_cu()
    atoms.calc = ScalingCalculator(smooth_potential(), dtype="float64")
    expected = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = ScalingCalculator(model_file, dtype=dtype)
    assert atoms.calc.potential.dtype == getattr(torch, dtype)
    tol = 1e-10 if dtype == "float64" else 1e-4
    assert atoms.get_potential_energy() == pytest.approx(expected[0], abs=tol * len(atoms))
    np.testing.assert_allclose(atoms.get_forces(), expected[1], atol=tol)
    np.testing.assert_allclose(atoms.get_stress(), expected[2], atol=tol)


def test_missing_file(tmp_path):
    _one_line_error(tmp_path / "nope.pt", "no such model file")


def test_truncated_file(model_file):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    _one_line_error(model_file, "truncated or corrupt")


@pytest.mark.parametrize("kind", ["random", "flipped", "empty", "text"])
def test_corrupt_file(model_file, kind):
    data = bytearray(model_file.read_bytes())
    if kind == "random":
        data = os.urandom(len(data))
    elif kind == "flipped":  # archive directory intact, member contents damaged
        for k in range(64, min(len(data) - 64, 4096)):
            data[k] ^= 0xA5
    else:
        data = b"" if kind == "empty" else b"energy = 1.0\n"
    model_file.write_bytes(bytes(data))
    _one_line_error(model_file, "not a readable model file|refused to load|not an mlip-scaling")


def test_unknown_format_version(model_file, pair_family):
    ckpt = potential_to_dict(smooth_potential())
    ckpt["format"] = "mlip-scaling/99"
    torch.save(ckpt, model_file)
    message = _one_line_error(model_file, "unknown format version")
    assert "mlip-scaling/99" in message and FORMAT in message


def test_not_a_model_dict(model_file):
    torch.save({"weights": torch.zeros(3)}, model_file)
    _one_line_error(model_file, "not an mlip-scaling model file")


def test_unknown_family(model_file, monkeypatch):
    monkeypatch.delitem(registry.FAMILIES, "pair")
    _one_line_error(model_file, "invalid model file.*unknown model family 'pair'")


def test_pickled_object_is_refused_and_never_runs(tmp_path, pair_family):
    marker = tmp_path / "executed"
    pickle.loads(pickle.dumps(MarkerOnUnpickle(marker)))  # unsafe unpickling runs it ...
    assert marker.exists()
    marker.unlink()
    ckpt = potential_to_dict(smooth_potential())
    ckpt["train"] = {"note": MarkerOnUnpickle(marker)}
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    message = _one_line_error(path, "refused to load")  # ... loading a model file never does
    assert "open" in message
    assert not marker.exists()


def test_equiformer_model_file_round_trip(tmp_path):
    presets = pytest.importorskip("mlip_scaling.models.equiformer_v2.presets")
    config = dict(presets.EQV2_PRESETS["eqv2-1.5k"])
    torch.manual_seed(0)
    # random weights give tiny outputs: scale them to a physical magnitude
    potential = Potential(registry.build_model("eqv2", config), "eqv2", config, species=[29],
                          reference_energies={29: -3.0}, scale=1e7).double()
    path = save_potential(tmp_path / "eqv2.pt", potential)
    atoms = rattled_cu(repeat=(1, 1, 1))
    expected = ScalingCalculator(potential, dtype="float64").predict([atoms])[0]
    assert np.abs(expected["forces"]).max() > 1e-3
    loaded = ScalingCalculator(path, dtype="float64")
    assert loaded.potential.family == "eqv2"
    got = loaded.predict([atoms])[0]
    assert got["energy"] == pytest.approx(expected["energy"], rel=1e-12)
    np.testing.assert_allclose(got["forces"], expected["forces"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["stress"], expected["stress"], rtol=1e-9, atol=1e-14)
