"""Fine-tuning (``mlip-train --init-from``): gain over training from scratch, parent record,
new elements, refitted references, freezing, and one-line refusals."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch

from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.checkpoint import load_checkpoint, load_potential
from mlip_scaling.data.generate import get_recipe, label_structure, make_structure
from mlip_scaling.data.oracles import get_oracle
from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.io_utils import file_hash
from mlip_scaling.training import TrainConfig, run_training
from mlip_scaling.training.cli import main, parse_config
from mlip_scaling.training.finetune import extend_elements

BASE = {"batch_size": 4, "val_size": 2, "test_size": 0, "device": "cpu", "lr": 5e-3,
        "energy_weight": 20.0}


def emt_data(elements: tuple[str, ...], n: int, seed: int, max_atoms: int = 16) -> list:
    """``n`` structures of the package's generator (<= ``max_atoms`` atoms), EMT-labelled."""
    recipe, oracle = get_recipe("test", "emt", elements), get_oracle("emt")
    out, index = [], 0
    while len(out) < n:
        atoms, mode, mode_seed = make_structure(recipe, index, seed)
        index += 1
        if len(atoms) <= max_atoms:
            out.append(label_structure(atoms, mode, mode_seed, oracle))
    return out


def pretrain(folder, n: int, epochs: int, **extra) -> str:
    """A 7k-parameter transformer trained on ``n`` EMT Cu structures -> its model file."""
    cfg = TrainConfig(model="transformer", params=7000, **BASE, epochs=epochs,
                      out=str(folder / "cu"), export="cu.pt", **extra)
    return str(run_training(cfg, source=emt_data(("Cu",), n, seed=0), verbose=False)["export"])


def held_out_mae(model: str, structures: list) -> tuple[float, float]:
    """Energy MAE (eV/atom) and force MAE (eV/Å) of ``model`` on labelled ``structures``."""
    pred = ScalingCalculator(model, device="cpu", dtype="float64").predict(structures)
    energy = np.mean([abs(float(p["energy"]) - a.get_potential_energy()) / len(a)
                      for p, a in zip(pred, structures)])
    forces = np.mean(np.concatenate([np.abs(p["forces"] - a.get_forces()).ravel()
                                     for p, a in zip(pred, structures)]))
    return float(energy), float(forces)


def compare(folder, parent: str, steps: int) -> dict[str, tuple[float, float]]:
    """Held-out Cu-Ni MAEs after ``steps`` steps on 8 Cu-Ni structures: from scratch and
    fine-tuned from ``parent``."""
    few, held = emt_data(("Cu", "Ni"), 8, seed=1), emt_data(("Cu", "Ni"), 16, seed=2)
    runs = {"scratch": {"model": "transformer", "params": 7000}, "finetune": {
        "init_from": parent}}
    maes = {}
    for name, extra in runs.items():
        cfg = TrainConfig(**BASE, **extra, epochs=1000, max_steps=steps,
                          out=str(folder / name), export="m.pt")
        maes[name] = held_out_mae(run_training(cfg, source=few, verbose=False)["export"], held)
    return maes


@pytest.fixture(scope="module")
def cu_model(tmp_path_factory) -> str:
    return pretrain(tmp_path_factory.mktemp("pretrain"), n=24, epochs=10)


def test_finetune_beats_scratch_quick(tmp_path, cu_model):
    """Measured: E 0.125 vs 0.320 eV/atom, F 0.447 vs 0.898 eV/Å (fine-tuned vs scratch)."""
    maes = compare(tmp_path, cu_model, steps=40)
    assert maes["finetune"][0] < 0.8 * maes["scratch"][0], maes
    assert maes["finetune"][1] < 0.8 * maes["scratch"][1], maes


@pytest.mark.slow
def test_finetune_beats_scratch_on_energy_and_forces(tmp_path):
    """Measured: E 0.062 vs 0.144 eV/atom, F 0.27 vs 0.63 eV/Å (fine-tuned vs scratch)."""
    maes = compare(tmp_path, pretrain(tmp_path, n=40, epochs=30), steps=60)
    assert maes["finetune"][0] < 0.8 * maes["scratch"][0], maes
    assert maes["finetune"][1] < 0.8 * maes["scratch"][1], maes


def test_parent_record_new_element_and_refitted_references(tmp_path, cu_model):
    source = load_potential(cu_model)
    cfg = TrainConfig(**BASE, init_from=cu_model, max_steps=2, out=str(tmp_path / "ft"),
                      export="ft.pt")
    result = run_training(cfg, source=emt_data(("Cu", "Ni"), 6, seed=1), verbose=False)
    ckpt = load_checkpoint(result["export"])
    assert ckpt["train"]["parent"] == {"file": "cu.pt", "sha256": file_hash(cu_model)}
    assert ckpt["species"] == [28, 29] and ckpt["model"] == {
        "family": source.family, "config": source.config}
    assert ckpt["reference_energies"][29] != pytest.approx(source.reference_dict()[29])


def test_new_element_rows_copy_the_nearest_element(cu_model):
    potential = load_potential(cu_model)
    added = extend_elements(potential, [28, 29, 47], "data.xyz")
    table = potential.model.embedding.weight
    assert added == [28, 47] and potential.species == [28, 29, 47]
    np.testing.assert_allclose(table[28].detach(), table[29].detach(), rtol=1e-12)
    np.testing.assert_allclose(table[47].detach(), table[29].detach(), rtol=1e-12)
    assert float(potential.reference_energies[47]) == pytest.approx(
        float(potential.reference_energies[29]), rel=1e-12)


def test_freeze_except_trains_only_the_last_units(tmp_path, cu_model, capsys):
    cfg = TrainConfig(**BASE, init_from=cu_model, freeze_except=1, max_steps=4, ema_decay=0,
                      out=str(tmp_path / "ft"), export="ft.pt")
    result = run_training(cfg, source=emt_data(("Cu",), 6, seed=5), verbose=True)
    assert "trainable: head (norm_out, readout) (" in capsys.readouterr().err
    before = torch.load(cu_model, weights_only=True)["state_dict"]
    after = load_checkpoint(result["export"])["state_dict"]
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        assert changed == name.startswith(("readout", "norm_out")), name
    with pytest.raises(ConfigError, match="exceeds the 3 blocks and heads"):
        run_training(TrainConfig(**BASE, init_from=cu_model, freeze_except=4, max_steps=1,
                                 out=str(tmp_path / "x")), source=emt_data(("Cu",), 6, 5),
                     verbose=False)


def _cli_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_conflicting_options_are_refused_in_one_line(tmp_path, cu_model, capsys):
    assert parse_config(["--init-from", cu_model, "--model", "transformer"]).init_from
    assert "drop --model" in _cli_error(capsys, ["--init-from", cu_model, "--model", "eqv2"])
    assert "drop --params" in _cli_error(
        capsys, ["--init-from", cu_model, "--params", "1e4", "--out", str(tmp_path / "a")])
    assert "needs --init-from" in _cli_error(capsys, ["--freeze-except", "1"])


def test_elements_beyond_the_embeddings_are_named(tmp_path, capsys):
    small = pretrain(tmp_path, n=6, epochs=1, model_config={"max_num_elements": 30})
    data = tmp_path / "cuag.extxyz"
    ase.io.write(data, emt_data(("Cu", "Ag"), 8, seed=3))
    err = _cli_error(capsys, ["--init-from", small, "--data", str(data), "--val-size", "2",
                              "--test-size", "0", "--out", str(tmp_path / "ft"),
                              "--device", "cpu"])
    assert "Ag are absent from the source model (trained on Cu)" in err
    assert "max_num_elements=30" in err and str(data) in err


def test_finetune_from_the_command_line_resumes_with_the_same_freezing(tmp_path, cu_model,
                                                                       capsys):
    data = tmp_path / "cuni.extxyz"
    ase.io.write(data, emt_data(("Cu", "Ni"), 8, seed=4))
    argv = ["--init-from", cu_model, "--data", str(data), "--val-size", "2", "--test-size", "0",
            "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "ft"),
            "--export", "ft.pt", "--freeze-except", "2"]
    assert main([*argv, "--max-steps", "2"]) == 0
    err = capsys.readouterr().err
    assert "added elements Ni" in err and "trainable: layers.1, head (norm_out, readout), " \
        "element embeddings (new elements)" in err
    assert main([*argv, "--max-steps", "3", "--resume"]) == 0
    assert load_checkpoint(tmp_path / "ft" / "ft.pt")["train"]["steps"] == 3
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*argv[:-1], "1", "--max-steps", "4", "--resume"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and "changed option(s) freeze_except" in last


def test_equiformer_elements_and_freezing_follow_the_same_rules():
    from mlip_scaling.models import registry
    from mlip_scaling.models.potential import Potential
    from mlip_scaling.training.finetune import freeze_except

    family, config = registry.get_preset("eqv2-5.6k")
    potential = Potential(registry.build_model(family, config), family, config, [29], {29: -1.0})
    assert extend_elements(potential, [28, 29], "data.h5") == [28]
    tables = [m for m in potential.model.modules() if isinstance(m, torch.nn.Embedding)]
    assert len(tables) >= 3 and all(torch.equal(t.weight[28], t.weight[29]) for t in tables)
    trainable = freeze_except(potential, 1, keep_embeddings=False)
    assert trainable.startswith("head (norm, energy_head")
    grads = {n for n, p in potential.model.named_parameters() if p.requires_grad}
    assert grads and all(n.startswith(("norm.", "energy_head.")) for n in grads)
    with pytest.raises(DataError, match=r"element\(s\) Fm are absent .*max_num_elements=96"):
        extend_elements(potential, [28, 29, 100], "data.h5")
