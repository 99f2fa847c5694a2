"""Every option of a training run, defined once (no torch here).

Each field of :class:`TrainConfig` carries its help text, its numeric rule and its flag
(:func:`mlip_scaling.options.option`): the ``mlip-train`` flags, config files, the values a
sweep passes on and the options that must not change on resume all come from these fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlip_scaling.cli_args import (
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    OPEN_FRACTION,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    OneLineParser,
)
from mlip_scaling.data.splits import SplitSpec
from mlip_scaling.errors import ConfigError
from mlip_scaling.options import (
    add_arguments,
    coerce_options,
    field_default,
    fields_where,
    flag_name,
    load_mapping,
    option,
)

__all__ = ["TrainConfig", "AMP_CHOICES", "RESUME_KEYS", "LOCK_NAME", "add_train_arguments",
           "explicit_options", "train_parser", "load_config_file", "config_args", "steps_of"]

#: The lock file a trainer holds in its run folder while it writes there
LOCK_NAME = ".mlip-train.lock"

#: ``auto`` = bf16 on CUDA with bf16, fp16 + GradScaler on other CUDA, the faster on a CPU.
AMP_CHOICES = ("auto", "bf16", "fp16", "off")

_MODEL, _OPTIM, _RUN = "model and data", "optimisation", "run"
_SPLIT = SplitSpec()  # the split defaults


def steps_of(value: float, total_steps: int) -> int:
    """A length given as a fraction of ``total_steps`` (< 1) or as a step count (>= 1)."""
    if value < 1:
        return int(round(value * total_steps))
    return int(value)


@dataclass
class TrainConfig:
    """Every option of a training run (units: lr in 1/step, sizes in structures)."""

    model: str = option("transformer", "model family (its default preset) or preset name, "
                        "e.g. transformer-1.2M", group=_MODEL, resume=True)
    params: float | None = option(None, "pick the preset of the --model family with about "
                                  "this many parameters", rule=POSITIVE, group=_MODEL,
                                  resume=True)
    model_config: dict = option(factory=dict, help="JSON object overriding hyperparameters of "
                                "the preset", group=_MODEL, resume=True)
    data: str | None = option(None, "dataset file (.h5 store, extxyz, ASE db, aselmdb); default: "
                              "the embedded dataset shipped with the package", group=_MODEL)
    train_size: int | None = option(None, "train on a nested subset of this many structures "
                                    "(default: all)", rule=POSITIVE_INT, group=_MODEL,
                                    resume=True)
    val_size: float = option(_SPLIT.val_size,
                             "validation split: fraction (<1) or number of structures",
                             rule=NON_NEGATIVE, group=_MODEL, resume=True)
    test_size: float = option(_SPLIT.test_size,
                              "test split held out from training: fraction or number",
                              rule=NON_NEGATIVE, group=_MODEL, resume=True)
    split_seed: int = option(_SPLIT.seed, "seed of the split", rule=SEED, group=_MODEL, resume=True)
    max_val_structures: int | None = option(
        None, "validate on at most this many structures of the validation split",
        rule=POSITIVE_INT, group=_MODEL)
    init_from: str | None = option(
        None, "fine-tune this model file: its architecture and weights, reference energies "
        "refitted to --data, new elements added when it can hold them", group=_MODEL,
        resume=True, metavar="MODEL.pt")
    freeze_except: int | None = option(
        None, "with --init-from: train only the last N blocks/heads (the head counts as one)",
        rule=POSITIVE_INT, group=_MODEL, resume=True)
    epochs: int = option(30, "passes over the training set", rule=POSITIVE_INT, group=_OPTIM)
    max_steps: int | None = option(None, "stop after this many steps", rule=POSITIVE_INT,
                                   group=_OPTIM)
    max_flops: float | None = option(None, "compute budget in FLOP (training stops when it is "
                                     "spent)", rule=POSITIVE, group=_OPTIM)
    patience: int | None = option(
        None, "early stopping: stop after this many validations in a row without a relative "
        "improvement of --min-delta in the validation loss, and export the best-validation "
        "weights (the epoch/step/FLOP budget is then a cap)", rule=POSITIVE_INT, group=_OPTIM)
    min_delta: float = option(1e-3, "with --patience: the smallest relative decrease of the "
                              "validation loss that counts as an improvement",
                              rule=OPEN_FRACTION, group=_OPTIM)
    min_steps: float = option(
        0, "with --patience: no early stop before this step: a fraction (<1) of the run's "
        "steps or a number of steps (a cosine schedule's loss keeps falling as the rate "
        "anneals, so a plateau at full rate is not convergence)", rule=NON_NEGATIVE,
        group=_OPTIM)
    lr: float = option(2e-3, "maximum learning rate (AdamW)", rule=POSITIVE, group=_OPTIM)
    warmup: float = option(0.01, "linear warm-up: fraction of the steps (<1) or number of "
                           "steps", rule=NON_NEGATIVE, group=_OPTIM)
    min_lr_factor: float = option(0.01, "final learning rate of the cosine decay, as a "
                                  "fraction of --lr", rule=FRACTION, group=_OPTIM)
    weight_decay: float = option(1e-3, "AdamW decay", rule=NON_NEGATIVE, group=_OPTIM)
    batch_size: int = option(64, "structures per step (global: split over DDP processes)",
                             rule=POSITIVE_INT, group=_OPTIM, resume=True)
    amp: str = option("off", "mixed precision; --amp alone: bf16 on CUDA with bf16, fp16 + "
                      "GradScaler on older GPUs; on a CPU the faster of bf16 and float32, timed "
                      "in its first steps (float32 without native bf16)", group=_OPTIM,
                      nargs="?", const="auto", choices=AMP_CHOICES)
    energy_weight: float = option(2.5, "weight of the energy/atom MAE", rule=NON_NEGATIVE,
                                  group=_OPTIM, resume=True)
    force_weight: float = option(20.0, "weight of the force L2MAE", rule=NON_NEGATIVE,
                                 group=_OPTIM, resume=True)
    stress_weight: float = option(5.0, "weight of each of the isotropic and anisotropic stress "
                                  "MAEs", rule=NON_NEGATIVE, group=_OPTIM, resume=True)
    ema_decay: float = option(0.999, "EMA decay (0: off)", rule=OPEN_FRACTION, group=_OPTIM,
                              resume=True)
    clip_grad: float = option(1.0, "gradient-norm clipping (0: off)", rule=NON_NEGATIVE,
                              group=_OPTIM)
    seed: int = option(0, "seed of weights and data order", rule=SEED, group=_OPTIM,
                       resume=True)
    device: str = option("auto", "auto, cpu, cuda, cuda:N", group=_RUN)
    out: str | None = option(None, "run directory (default: runs/<family>-<size>)", group=_RUN)
    resume: bool = option(False, "continue the run in --out from its last.pt (fresh start if "
                          "none)", group=_RUN)
    allow_data_change: bool = option(
        False, "with --resume: continue on a dataset whose content differs from the one the "
        "run started on (the export records both hashes)", group=_RUN)
    export: str | None = option(None, "model file name (default: <family>-<size>.pt in the run "
                                "directory)", group=_RUN)
    compile: bool = option(False, "torch.compile the model (direct-force models only)",
                           group=_RUN)
    workers: int = option(0, "data-loading workers", rule=NON_NEGATIVE_INT, group=_RUN)
    threads: int = option(0, "CPU threads of torch (0: torch's default); 1 is often fastest on "
                          "a CPU shared with other jobs", rule=NON_NEGATIVE_INT, group=_RUN)
    val_every: int = option(0, "validate every K steps (0: at the end of every epoch)",
                            rule=NON_NEGATIVE_INT, group=_RUN)
    save_every: int = option(50, "write the resumable last.pt every K steps "
                                 "(and at the end)",
                             rule=POSITIVE_INT, group=_RUN)

    def validate(self) -> TrainConfig:
        """Check ranges and combinations; raise :class:`ConfigError` with one line."""
        for f in dataclasses.fields(self):
            if f.metadata["rule"] is not None:
                f.metadata["rule"].check(flag_name(f.name), getattr(self, f.name))
        if self.freeze_except is not None and not self.init_from:
            raise ConfigError("--freeze-except needs --init-from (a model file to start from)")
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        if self.energy_weight + self.force_weight + self.stress_weight <= 0:
            raise ConfigError("at least one of the energy/force/stress weights must be > 0")
        for name in ("val_size", "test_size"):
            value = getattr(self, name)
            if value >= 1 and value != int(value):
                raise ConfigError(f"{flag_name(name)} must be a fraction in [0, 1) or "
                                  f"a whole number of structures, got {value}")
        if self.patience is not None and self.val_size == 0:
            raise ConfigError("--patience needs a validation split (--val-size > 0)")
        if not isinstance(self.model_config, dict):
            raise ConfigError("model_config must be a mapping of hyperparameters")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every option."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


#: Options that must not change when a run is resumed (fields marked ``resume``).
RESUME_KEYS: tuple[str, ...] = fields_where(TrainConfig, "resume")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (defaults shown in ``--help``)."""
    add_arguments(parser, TrainConfig)


def train_parser(prog: str = "mlip-train") -> argparse.ArgumentParser:
    """A parser of the :class:`TrainConfig` flags only (one-line errors)."""
    parser = OneLineParser(prog=prog)
    add_train_arguments(parser)
    return parser


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, Any]:
    """The options given explicitly in ``argv`` to ``parser`` (flags not given are absent),
    values checked by their rules; ConfigError on a bad or unknown flag."""
    for action in parser._actions:
        if action.dest != "help":
            action.default = argparse.SUPPRESS
    return vars(parser.parse_args(list(argv)))


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Options from a YAML (or JSON) file; keys may use ``-`` or ``_``; values checked."""
    return coerce_options(TrainConfig, load_mapping(path, "config"), f"{path}: ")


def _text(value: Any) -> str:
    """A flag value as text that parses back to ``value``."""
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def config_args(cfg: TrainConfig) -> list[str]:
    """The ``mlip-train`` flags that rebuild ``cfg`` (options at their default are left out)."""
    args: list[str] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value == field_default(f):
            continue
        if isinstance(value, bool):
            args.append(flag_name(f.name, f))
        else:
            args += [flag_name(f.name, f), _text(value)]
    return args
