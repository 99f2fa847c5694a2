"""The package as a user installs it: the embedded dataset is package data of the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mlip_scaling
from mlip_scaling.data.embedded import default_data_path

ROOT = Path(__file__).resolve().parents[1]


def test_embedded_dataset_is_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    path = default_data_path()
    package = Path(mlip_scaling.__file__).resolve().parent
    assert path.is_file() and path.resolve().is_relative_to(package)
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["mlip_scaling"]
    assert path.resolve().relative_to(package).as_posix() in listed


def _copy_source(dest: Path) -> Path:
    """What ``pip install .`` reads: pyproject, README and the package (no caches)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "mlip_scaling", dest / "mlip_scaling",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def test_plain_install_trains_on_the_embedded_dataset(tmp_path):
    """``pip install --target`` (no editable link), then mlip-train from another directory."""
    pytest.importorskip("setuptools")  # the build backend (extra ``test``), no network needed
    source = _copy_source(tmp_path / "src")
    target, cwd = tmp_path / "site", tmp_path / "elsewhere"
    cwd.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), "."],
                   cwd=source, check=True, capture_output=True, timeout=300)
    shutil.rmtree(source)  # nothing may be read from the source tree any more
    assert (target / "mlip_scaling" / "data" / "default.h5").is_file()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(target / "bin" / "mlip-train"), "--epochs", "30",
                           "--amp", "--max-steps", "2", "--train-size", "32",
                           "--max-val-structures", "16", "--out", "run"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    [export] = [p for p in (cwd / "run").glob("*.pt") if p.name != "last.pt"]
    train = torch.load(export, weights_only=True)["train"]
    assert train["steps"] == 2
    assert Path(train["dataset"]).resolve().is_relative_to(target.resolve())


def test_data_info_defaults_to_the_embedded_dataset(capsys):
    from mlip_scaling.data.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "10,000" in out and "mixed:emt+sw" in out


_IMPORT_EACH = """
import importlib, json, pkgutil, sys
import mlip_scaling

names = [m.name for m in pkgutil.walk_packages(mlip_scaling.__path__, "mlip_scaling.")
         if not m.name.endswith("__main__")]
report = {"modules": len(names), "failed": {}, "training_in": [], "optional": []}
for name in names:
    for loaded in [m for m in sys.modules if m.startswith("mlip_scaling")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        missing = getattr(cause, "name", None) if isinstance(cause, ImportError) else None
        if missing and not missing.startswith("mlip_scaling"):  # an optional extra absent
            report["optional"].append(name)
            continue
        report["failed"][name] = repr(exc)[:300]
    if name.startswith(("mlip_scaling.scaling", "mlip_scaling.data")) and any(
            m.startswith("mlip_scaling.training") for m in sys.modules):
        report["training_in"].append(name)
print(json.dumps(report))
"""


def test_every_module_imports_alone_and_scaling_never_loads_training():
    """An import circle fails when a module of it is the first one imported; each module is
    imported first, alone, and scaling/ and data/ must not load training/ on the way."""
    import json

    out = subprocess.run([sys.executable, "-c", _IMPORT_EACH], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    report = json.loads(out.splitlines()[-1])
    assert report["modules"] > 80
    assert report["failed"] == {} and report["training_in"] == []


def test_socket_client_is_library_code_and_its_former_command_name_still_runs(tmp_path):
    import mlip_scaling.calculators.socket_serve as library

    assert "argparse" not in vars(library) and not hasattr(library, "main")
    missing = subprocess.run(
        [sys.executable, "-m", "mlip_scaling.calculators.socket_client", "model.pt",
         str(tmp_path / "absent.xyz"), "--unix", "x"], capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr == f"error: {tmp_path / 'absent.xyz'}: no such dataset file\n"
