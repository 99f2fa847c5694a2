"""Options defined once: flags, config files, coercion and resume keys come from the fields;
progress output only on a terminal; the import layering of config, sweep and presets."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass

import pytest

from mlip_scaling.cli_args import POSITIVE_INT, OneLineParser
from mlip_scaling.errors import ConfigError
from mlip_scaling.options import add_arguments, coerce_options, fields_where, option
from mlip_scaling.train_config import RESUME_KEYS, TrainConfig, config_args, load_config_file
from mlip_scaling.training.cli import build_parser, parse_config


def test_every_field_is_a_flag_and_resume_keys_are_the_marked_fields():
    flags = {a.dest: a for a in build_parser()._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in flags and flags[f.name].help == f.metadata["help"], f.name
        assert flags[f.name].default == (f.default_factory() if f.name == "model_config"
                                         else f.default)
    assert set(flags) - {f.name for f in dataclasses.fields(TrainConfig)} == {
        "help", "version", "config", "quiet", "verbose"}
    assert RESUME_KEYS == fields_where(TrainConfig, "resume")
    assert {"model", "seed", "batch_size", "init_from"} <= set(RESUME_KEYS)
    assert not {"epochs", "lr", "out", "device"} & set(RESUME_KEYS)


def test_a_new_field_is_a_flag_a_file_key_and_a_checked_value():
    @dataclass
    class Settings:
        steps: int = option(3, "how many steps", rule=POSITIVE_INT, resume=True)
        name: str | None = option(None, "a name")
        fast: bool = option(False, "go fast")

    parser = OneLineParser(prog="x")
    add_arguments(parser, Settings)
    assert vars(parser.parse_args(["--steps", "1e2", "--fast"])) == {
        "steps": 100, "name": None, "fast": True}
    with pytest.raises(ConfigError, match="--steps: must be a whole number >= 1"):
        parser.parse_args(["--steps", "0"])
    assert coerce_options(Settings, {"steps": "20", "name": "a"}) == {"steps": 20, "name": "a"}
    with pytest.raises(ConfigError, match="f.yaml: --steps must be a whole number >= 1, got 2.5"):
        coerce_options(Settings, {"steps": 2.5}, "f.yaml: ")
    with pytest.raises(ConfigError, match="f.yaml: --fast must be true or false"):
        coerce_options(Settings, {"fast": "yes"}, "f.yaml: ")
    with pytest.raises(ConfigError, match="unknown option"):
        coerce_options(Settings, {"stepz": 1})
    assert fields_where(Settings, "resume") == ("steps",)


def test_config_file_values_are_typed_and_checked(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lr: '1e-3'\nmax-flops: 1e18\nepochs: 4.0\ntrain_size: null\n")
    assert load_config_file(path) == {"lr": 1e-3, "max_flops": 1e18, "epochs": 4,
                                      "train_size": None}
    for text, message in (("epochs: 3.5\n", "--epochs must be a whole number"),
                          ("model: 5\n", "--model must be text"),
                          ("resume: 1\n", "--resume must be true or false"),
                          ("model_config: [1]\n", "--model-config must be a mapping"),
                          ("lr_max: 1\n", "unknown option(s) lr_max"),
                          ("- 1\n", "a config file is a mapping")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config_file(path)


def test_flags_derived_from_a_config_rebuild_it():
    cfg = TrainConfig(model="transformer-1.2k", train_size=10, lr=1.5e-3, max_flops=2e12,
                      resume=True, amp="bf16", model_config={"cutoff": 4.0}, out="o")
    args = config_args(cfg)
    assert args[:2] == ["--model", "transformer-1.2k"] and "--epochs" not in args
    assert parse_config(args) == cfg


def _imported_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return {m for m in out.split() if m.startswith("mlip_scaling")}


def test_layering_of_config_sweep_and_presets():
    sweep = _imported_after("import mlip_scaling.scaling.sweep, mlip_scaling.scaling.cli")
    assert not {m for m in sweep if m.startswith("mlip_scaling.training")}
    assert "mlip_scaling.models.registry" not in _imported_after(
        "import mlip_scaling.models.presets")
    assert "torch" not in _imported_after("import mlip_scaling.train_config")


def test_progress_is_drawn_only_on_a_terminal(monkeypatch, capsys):
    from mlip_scaling import progress

    monkeypatch.setattr(progress, "interactive", lambda: True)
    with progress.ProgressBar(3, desc="work", unit="items") as bar:
        assert bar._progress is not None
        bar.advance(3)
    assert "work" in capsys.readouterr().err
    with progress.ProgressBar(3, enabled=False) as bar:  # --quiet
        assert bar._progress is None
    monkeypatch.setattr(progress, "interactive", lambda: False)
    assert list(progress.track(range(3), 3, "x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_redirected_cli_output_has_no_carriage_returns_or_escapes(tmp_path):
    out = tmp_path / "sw.h5"
    with open(tmp_path / "log.txt", "wb") as log:
        subprocess.run([sys.executable, "-m", "mlip_scaling.data.cli", "generate", "--recipe",
                        "sw", "--structures", "3", "--out", str(out), "--jobs", "1"],
                       stdout=log, stderr=log, check=True)
    text = (tmp_path / "log.txt").read_bytes()
    assert b"wrote 3 structures" in text
    assert b"\r" not in text and b"\x1b" not in text


def _subparser(parser, name):
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def test_evaluate_flags_report_overrides_and_records_share_the_settings(tmp_path):
    from mlip_scaling.scaling.cli import _parser
    from mlip_scaling.scaling.eval_settings import EVAL_KEYS, EvalSettings

    parser = _parser()
    evaluate = vars(_subparser(parser, "evaluate").parse_args(["d"]))
    assert {k: evaluate[k] for k in EVAL_KEYS} == dataclasses.asdict(EvalSettings())
    report = vars(_subparser(parser, "report").parse_args(["d", "--no-downstream"]))
    assert {k: report[k] for k in EVAL_KEYS} == {**dict.fromkeys(EVAL_KEYS), "downstream": False}
    record = EvalSettings(data="x.h5", downstream=False, md_steps=7).record()
    assert record["md_steps"] == 0 and record["data"] == str((tmp_path.cwd() / "x.h5").resolve())
    assert set(record) == set(EVAL_KEYS) - {"relax_max_atoms", "md_min_length", "k_phonon",
                                            "phonon_min_length", "k_elastic"}
    assert EvalSettings(relax_max_atoms=4).record()["relax_max_atoms"] == 4
    assert EvalSettings(k_phonon=2, k_elastic=3).record()["k_elastic"] == 3


@dataclass
class _Switches:
    fast: bool = option(True, "turn off", flag_name="--no-fast")
    count: int = option(1, "a count", rule=POSITIVE_INT, flag_name="--n")


def test_config_args_use_each_fields_own_flag():
    args = config_args(_Switches(fast=False, count=3))
    assert args == ["--no-fast", "--n", "3"]
    parser = OneLineParser()
    add_arguments(parser, _Switches)
    assert vars(parser.parse_args(args)) == {"fast": False, "count": 3}
