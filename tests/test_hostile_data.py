"""Bad data -> `mlip-data` and `mlip-train` stop with one line naming the structure (exit 2).

Bad stores are crafted by editing a good one with h5py (or its raw bytes): NaN positions,
Z=200 and Z=0, inconsistent offsets, a corrupt positions chunk, values changed after the
content hash was recorded, overlapping atoms. A run whose steps were all skipped or whose
validation MAE is not finite must not export a model.
"""

from __future__ import annotations

import json
import re
import shutil

import ase.io
import h5py
import numpy as np
import pytest
import torch
from test_training_helpers import emt_structures

from mlip_scaling.data import cli as data_cli
from mlip_scaling.data.readers import open_dataset
from mlip_scaling.data.store import StructureStore, _content_hash, write_store
from mlip_scaling.errors import DataError
from mlip_scaling.training import cli as train_cli

TINY = ["--model", "transformer", "--params", "1000", "--batch-size", "4", "--val-size", "4",
        "--test-size", "4", "--train-size", "8", "--epochs", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "good.h5"
    return write_store(path, emt_structures(16, seed=3), {"name": "good", "oracle": "emt"})


def _edited(good, tmp_path, edit) -> str:
    path = tmp_path / "bad.h5"
    shutil.copy(good, path)
    with h5py.File(path, "r+") as fh:
        edit(fh)
    return str(path)


def _exit2(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]  # mlip-train prints its run summary first
    assert last.startswith("error: ")
    return last


def _set(name, index, value):
    def edit(fh):
        fh[name][index] = value
    return edit


CASES = {
    "nan_position": (_set("positions", (13, 1), np.nan),
                     r"structure 3: positions of atom 1 are not finite"),
    "z_200": (_set("numbers", 9, 200), r"structure 2: atomic number 200 is not an element"),
    "z_0": (_set("numbers", 0, 0), r"structure 0: atomic number 0 is not an element"),
    "offsets_negative": (_set("offsets", 5, -30),
                         r"structure 4 has -46 atoms according to the offsets"),
    "offsets_past_end": (_set("offsets", 16, 70), r"array 'numbers' has shape \(64,\)"),
    "inf_energy": (_set("energy", 6, np.inf), r"structure 6: energy is not finite"),
}


@pytest.mark.parametrize("case", CASES)
def test_info_and_training_refuse_bad_stores(case, good, tmp_path, capsys):
    edit, message = CASES[case]
    path = _edited(good, tmp_path, edit)
    err = _exit2(data_cli.main, ["info", path], capsys)
    assert re.search(message, err), err
    out = tmp_path / "run"
    err = _exit2(train_cli.main, [*TINY, "--data", path, "--out", str(out)], capsys)
    assert re.search(message, err), err
    assert not out.exists()


def test_corrupt_positions_chunk_is_found_by_info(good, tmp_path, capsys):
    path = tmp_path / "corrupt.h5"
    shutil.copy(good, path)
    with h5py.File(path, "r") as fh:
        chunk = fh["positions"].id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    middle = chunk.byte_offset + chunk.size // 2
    raw[middle : middle + 16] = bytes(16)
    path.write_bytes(bytes(raw))
    err = _exit2(data_cli.main, ["info", str(path)], capsys)
    assert "cannot read array 'positions'" in err


def test_values_changed_after_writing_fail_the_content_hash(good, tmp_path, capsys):
    path = _edited(good, tmp_path, _set("positions", (5, 0), 1.25))
    assert data_cli.main(["info", path]) == 0  # plausible values: only the hash can tell
    capsys.readouterr()
    err = _exit2(data_cli.main, ["info", "--verify", path], capsys)
    assert "content hash mismatch" in err
    with pytest.raises(DataError, match="content hash mismatch"):
        open_dataset(path)  # what training opens


def test_overlapping_atoms(good, tmp_path, capsys):
    def overlap_all(fh):  # as an older writer would have stored them: hash matches
        positions = fh["positions"][()]
        positions[1::4] = positions[0::4]
        fh["positions"][...] = positions
        meta = json.loads(fh.attrs["metadata"])
        meta["content_hash"] = _content_hash({k: fh[k][()] for k in fh})
        fh.attrs["metadata"] = json.dumps(meta)

    path = _edited(good, tmp_path, overlap_all)
    err = _exit2(data_cli.main, ["info", "--verify", path], capsys)
    assert err.endswith("structure 0: atoms 0 and 1 are 0 Å apart (minimum 0.1 Å): "
                        "overlapping atoms")
    out = tmp_path / "run"
    err = _exit2(train_cli.main, [*TINY, "--data", path, "--out", str(out)], capsys)
    assert re.search(r"bad.h5: structure \d+: atoms 0 and 1 are 0 Å apart", err), err
    assert not out.exists()


def test_convert_stops_at_the_overlapping_structure(tmp_path, capsys):
    structures = emt_structures(5, seed=4)
    structures[3].positions[2] = structures[3].positions[0] + 0.05
    src = tmp_path / "in.extxyz"
    ase.io.write(src, structures)
    err = _exit2(data_cli.main, ["convert", str(src), str(tmp_path / "out.h5")], capsys)
    assert "in.extxyz: structure 3: atoms 0 and 2 are 0.0866 Å apart" in err
    assert not (tmp_path / "out.h5").exists()


def test_verify_passes_a_sound_store(good, capsys):
    assert data_cli.main(["info", "--verify", str(good)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "verified" in out and "content hash of 16 structures" in out
    StructureStore(good).validate(content_hash=True)


def _train_into(tmp_path, good, capsys) -> tuple[str, object]:
    out = tmp_path / "run"
    err = _exit2(train_cli.main, [*TINY, "--data", str(good), "--out", str(out),
                                  "--export", "m.pt"], capsys)
    return err, out


def test_run_with_every_step_skipped_is_not_exported(good, tmp_path, capsys, monkeypatch):
    from mlip_scaling.training import trainer

    real = trainer.total_loss
    monkeypatch.setattr(trainer, "total_loss", lambda terms, w: real(terms, w) * torch.nan)
    err, out = _train_into(tmp_path, good, capsys)
    assert "all 2 steps were skipped" in err and "no model was exported" in err
    assert not (out / "m.pt").exists()


def test_run_with_non_finite_validation_is_not_exported(good, tmp_path, capsys, monkeypatch):
    from mlip_scaling.training import trainer

    real = trainer.finish_metrics
    monkeypatch.setattr(trainer, "finish_metrics",
                        lambda sums: {**real(sums), "energy_mae": float("inf")})
    err, out = _train_into(tmp_path, good, capsys)
    assert "validation energy_mae is inf" in err
    assert not (out / "m.pt").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("1000000000\nProperties=species:S:1:pos:R:3 energy=1.0\nCu 0 0 0\n",
     "structure 0 claims 1,000,000,000 atoms but only 1 atom lines follow"),
    ("1\nenergy=1.0\nCu 0 0 0\n3\nenergy=2.0\nCu 0 0 0\nCu 1 1 1\n",
     "structure 1 claims 3 atoms but only 2 atom lines follow"),
])
def test_xyz_atom_count_beyond_the_file_is_one_line_at_once(tmp_path, capsys, text, message):
    import signal
    import time

    path = tmp_path / "claims.extxyz"
    path.write_text(text)
    before = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the reader did not stop"))
    signal.alarm(60)
    try:
        start = time.perf_counter()
        err = _exit2(data_cli.main, ["convert", str(path), str(tmp_path / "out.h5")], capsys)
        assert time.perf_counter() - start < 5.0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert err == f"error: {path}: {message} its comment line"
    assert not (tmp_path / "out.h5").exists()
