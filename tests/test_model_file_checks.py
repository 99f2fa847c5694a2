"""Hostile model files: inflated configs, bad species, NaN weights, wrong field types and
pickled objects are refused with one line, before any model is built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from test_trust import labelled, model_on

from mlip_scaling.checkpoint import CheckpointError, load_checkpoint, load_potential
from mlip_scaling.data.store import write_store
from mlip_scaling.errors import ConfigError
from mlip_scaling.models import registry
from mlip_scaling.models.presets import PRESETS
from mlip_scaling.training.state import load_state

REPO = Path(__file__).resolve().parents[1]
#: about 420M weights (1.7 GB in float32) implied by a 12 KB file
INFLATED = {"num_layers": 2, "hidden_channels": 4096, "ffn_hidden": 16384, "num_heads": 8}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    store = write_store(root / "d.h5", labelled(8), {"name": "d", "oracle": "emt"})
    return model_on(root / "good.pt", store)


def tampered(good: Path, out: Path, change) -> Path:
    """A copy of ``good`` with ``change(ckpt)`` applied to its dict."""
    ckpt = torch.load(good, weights_only=True)
    change(ckpt)
    torch.save(ckpt, out)
    return out


def refusal(path: Path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as err:
        load_potential(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def _set(*keys, value):
    def change(ckpt):
        target = ckpt
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


def _first_weight(value):
    def change(ckpt):
        next(iter(ckpt["state_dict"].values())).view(-1)[-1] = value
    return change


CASES = {
    "species-200": (_set("species", value=[200]),
                    "species: atomic number 200 is not an element in 1..118"),
    "species-0": (_set("species", value=[0, 29]),
                  "species: atomic number 0 is not an element in 1..118"),
    "reference-z200": (_set("reference_energies", value={200: -1.0}),
                       "reference_energies: atomic number 200"),
    "reference-nan": (_set("reference_energies", value={29: float("nan")}), "Z=29"),
    "species-bool": (_set("species", value=[True]), "atomic number True"),
    "weight-nan": (_first_weight(float("nan")), "holds NaN or inf"),
    "weight-inf": (_first_weight(float("inf")), "holds NaN or inf"),
    "scale-inf": (_set("scale", value=float("inf")), "'scale' must be a finite number"),
    "weight-not-tensor": (_set("state_dict", "embedding.weight", value=[1.0]), "not a tensor"),
    "train-list": (_set("train", value=[1, 2]), "'train' must be a mapping"),
    "split-str": (_set("train", "split", value="x"), "train.split must be a mapping"),
    "split-seed-str": (_set("train", "split", "seed", value="0"), "train.split.seed must be"),
    "n-params-str": (_set("train", "n_params", value="1e3"), "train.n_params must be a finite"),
    "dataset-list": (_set("train", "dataset", value=["a"]), "train.dataset must be a string"),
    "config-list": (_set("model", "config", value=[1]), "'model' must be"),
    "unknown-key": (_set("model", "config", "exec", value="x"), "unknown hyperparameter.*exec"),
    "missing-key": (lambda c: c["model"]["config"].pop("num_heads"), "lacks num_heads"),
    "heads-5": (_set("model", "config", "num_heads", value=5), "not divisible by num_heads=5"),
    "cutoff-nan": (_set("model", "config", "cutoff", value=float("nan")), "cutoff must be"),
    "layers-1e4": (_set("model", "config", "num_layers", value=10**4), r"num_layers must.*64\]"),
    "layers-float": (_set("model", "config", "num_layers", value=2.5), "num_layers must"),
    "family-unknown": (_set("model", "family", value="os"), "unknown model family 'os'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_file_is_refused_in_one_line(case, good, tmp_path):
    change, match = CASES[case]
    refusal(tampered(good, tmp_path / f"{case}.pt", change), match)


def test_inflated_config_is_refused_before_building(good, tmp_path, monkeypatch):
    built = []
    real = registry.build_model
    monkeypatch.setattr(registry, "build_model",
                        lambda f, c, device=None: built.append(str(device)) or real(f, c, device))
    eqv2 = tampered(good, tmp_path / "eqv2.pt", _set("model", value={
        "family": "eqv2", "config": {**registry.get_preset("eqv2-1.5k")[1],
                                     "sphere_channels": 10**6}}))
    assert "sphere_channels must be a whole number in [1, 8192]" in refusal(eqv2, "invalid")
    assert built == []  # out of range: nothing built, not even on the meta device
    wide = tampered(good, tmp_path / "wide.pt", lambda c: c["model"]["config"].update(INFLATED))
    message = refusal(wide, "config implies 420,081,749 weights")
    assert "holds 1,168" in message
    assert built == ["meta"]  # compared on the meta device only; never allocated


def test_meta_shapes_match_saved_weights(good):
    ckpt = load_checkpoint(good)
    assert registry.meta_shapes("transformer", ckpt["model"]["config"]) == {
        k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}


@pytest.mark.parametrize("name", ["transformer-2.3k", "transformer-seed-2.2k", "eqv2-1.5k",
                                  "eqv2-5.6k", "bpnn-5.3k", "gemnet-12k"])
def test_meta_shapes_equal_a_real_build(name):
    family, config = registry.get_preset(name)
    real = registry.build_model(family, config).state_dict()
    assert registry.meta_shapes(family, config) == {k: tuple(v.shape) for k, v in real.items()}


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid_configs(name):
    registry.validate_config(*registry.get_preset(name))


def test_config_checks():
    family, config = registry.get_preset("eqv2-1.5k")
    with pytest.raises(ConfigError, match="mmax=3 exceeds lmax=2"):
        registry.validate_config(family, {**config, "lmax": 2, "mmax": 3})
    with pytest.raises(ConfigError, match="direct_forces must be"):
        registry.validate_config(family, {**config, "direct_forces": [1]})
    with pytest.raises(ConfigError, match="cutoff must be a number in"):
        registry.validate_config(family, {**config, "cutoff": -1.0})
    registry.validate_config(family, {**config, "grid_resolution": None})


def test_unpickling_refusal_is_ours(good, tmp_path):
    evil = tampered(good, tmp_path / "evil.pt", _set("train", "x", value=exec))
    message = refusal(evil, "refused to load")
    assert "(exec)" in message and message.endswith("read as data only")
    for text in ("add_safe_globals", "weights_only", "allowlist", "`", "\x1b"):
        assert text not in message
    with pytest.raises(ConfigError) as err:  # a run state (mlip-train --resume) says the same
        load_state(evil)
    assert "add_safe_globals" not in str(err.value) and str(err.value).endswith("only)")


def test_compressed_archive_is_refused_before_unpacking(good, tmp_path):
    big = tampered(good, tmp_path / "zeros.pt", _set("state_dict", "pad", value=torch.zeros(
        1 << 20)))  # 4 MB of zeros
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(big) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    assert bomb.stat().st_size < 200_000
    refusal(bomb, "unpacks to 4.2 MB")


def test_corrupt_file_message_is_whole(good, tmp_path):
    data = bytearray(good.read_bytes())
    for k in range(64, min(len(data) - 64, 4096)):
        data[k] ^= 0xA5
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    message = refusal(tmp_path / "flipped.pt", "not a readable model file|refused")
    assert message.endswith(")") or message.endswith("only")


def test_folder_with_bad_files_reports_and_skips(good, tmp_path):
    """evaluate of a folder: each bad file is one line and skipped, the good one is
    evaluated, exit 1; the inflated file never raises the peak memory (before: 1846 MB)."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.pt").write_bytes(good.read_bytes())
    for case in ("species-200", "weight-nan", "species-0"):
        tampered(good, folder / f"{case}.pt", CASES[case][0])
    tampered(good, folder / "inflated.pt", lambda c: c["model"]["config"].update(INFLATED))
    code = ("import resource, sys\nfrom mlip_scaling.scaling.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as exc:\n    rc = exc.code\n"
            "print('PEAK_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
            "sys.exit(rc)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code, "evaluate", str(folder),
                           "--no-downstream", "--quiet"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    failed = [line for line in lines if line.startswith("failed ")]
    assert len(failed) == 4 and all("invalid model file" in line for line in failed)
    assert int(next(x for x in lines if x.startswith("PEAK_MB")).split()[1]) < 1000
    records = json.loads((folder / "scaling_results.json").read_text())["records"]
    status = {r["checkpoint"]: r["status"] for r in records}
    assert status.pop("good.pt") == "ok" and set(status.values()) == {"failed"}
