"""Training options: one dataclass, a YAML file, command-line overrides, validation."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlip_scaling.cli_args import (
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    OPEN_FRACTION,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    Number,
)
from mlip_scaling.errors import ConfigError

__all__ = ["TrainConfig", "AMP_CHOICES", "RANGES", "load_config_file", "merge_config",
           "check_model_config"]

#: ``auto`` = bf16 on CUDA with bf16, fp16 + GradScaler on other CUDA, the faster on a CPU.
AMP_CHOICES = ("auto", "bf16", "fp16", "off")

#: The rule of every numeric option, for its flag (argparse ``type=``) and config-file key
#: alike; ``None`` (= unset) always passes.
RANGES: dict[str, Number] = {
    "params": POSITIVE, "train_size": POSITIVE_INT, "val_size": NON_NEGATIVE,
    "test_size": NON_NEGATIVE, "split_seed": SEED, "max_val_structures": POSITIVE_INT,
    "epochs": POSITIVE_INT, "max_steps": POSITIVE_INT, "max_flops": POSITIVE, "lr": POSITIVE,
    "warmup": NON_NEGATIVE, "min_lr_factor": FRACTION, "weight_decay": NON_NEGATIVE,
    "batch_size": POSITIVE_INT, "energy_weight": NON_NEGATIVE, "force_weight": NON_NEGATIVE,
    "stress_weight": NON_NEGATIVE, "ema_decay": OPEN_FRACTION, "clip_grad": NON_NEGATIVE,
    "seed": SEED, "workers": NON_NEGATIVE_INT, "threads": NON_NEGATIVE_INT,
    "val_every": NON_NEGATIVE_INT, "save_every": POSITIVE_INT, "freeze_except": POSITIVE_INT,
}


@dataclass
class TrainConfig:
    """Every option of a training run (units: lr in 1/step, sizes in structures)."""

    model: str = "transformer"  # family (its default preset) or preset name
    params: float | None = None  # nearest preset of the family by parameter count
    model_config: dict = field(default_factory=dict)  # overrides of the preset's hyperparameters
    data: str | None = None  # dataset file; None = the embedded dataset
    train_size: int | None = None  # nested subset of the training split; None = all of it
    val_size: float = 0.05  # fraction (<1) or number of structures held out for validation
    test_size: float = 0.05  # fraction (<1) or number held out for testing (never trained on)
    split_seed: int = 0
    epochs: int = 30
    max_steps: int | None = None
    max_flops: float | None = None  # compute budget (FLOP); stops when reached
    lr: float = 2e-3  # maximum learning rate
    warmup: float = 0.01  # fraction of the steps (< 1) or number of steps (>= 1)
    min_lr_factor: float = 0.01
    weight_decay: float = 1e-3
    batch_size: int = 64  # global batch (split over DDP processes)
    amp: str = "off"
    energy_weight: float = 2.5
    force_weight: float = 20.0
    stress_weight: float = 5.0
    ema_decay: float = 0.999  # 0 disables EMA
    clip_grad: float = 1.0  # 0 disables clipping
    seed: int = 0
    device: str = "auto"
    out: str | None = None  # run directory; None = runs/<export name without .pt>
    resume: bool = False
    allow_data_change: bool = False  # resume on a dataset with another content hash
    export: str | None = None  # None = {family}-{size}.pt in the run directory
    compile: bool = False
    workers: int = 0
    threads: int = 0  # CPU threads of torch (0 = torch's default)
    val_every: int = 0  # steps between validations; 0 = at the end of every epoch
    save_every: int = 50  # steps between resumable checkpoints (and at every epoch end)
    max_val_structures: int | None = None  # cap of the validation set (None = all)
    init_from: str | None = None  # model file to fine-tune (architecture and weights)
    freeze_except: int | None = None  # with init_from: train only the last N blocks/heads

    def validate(self) -> TrainConfig:
        """Check ranges and combinations; raise :class:`ConfigError` with one line."""
        for name, rule in RANGES.items():
            rule.check(f"--{name.replace('_', '-')}", getattr(self, name))
        if self.freeze_except is not None and not self.init_from:
            raise ConfigError("--freeze-except needs --init-from (a model file to start from)")
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        if self.energy_weight + self.force_weight + self.stress_weight <= 0:
            raise ConfigError("at least one of the energy/force/stress weights must be > 0")
        for name in ("val_size", "test_size"):
            value = getattr(self, name)
            if value < 0 or (value >= 1 and value != int(value)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a fraction in [0, 1) or "
                                  f"a whole number of structures, got {value}")
        if not isinstance(self.model_config, dict):
            raise ConfigError("model_config must be a mapping of hyperparameters")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every option."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _model_value_rule(old: Any) -> tuple[Callable[[Any], bool], str]:
    """How an override of a preset value ``old`` is checked, and the rule in words."""
    if isinstance(old, bool):
        return (lambda v: isinstance(v, bool)), "true or false"
    if isinstance(old, str):  # a name, checked by the model's builder
        return (lambda v: isinstance(v, str) and v != ""), "a name (string)"
    if isinstance(old, int):
        return (lambda v: isinstance(v, int) and POSITIVE_INT.accepts(v)), POSITIVE_INT.describe()
    if old is None:
        return (lambda v: v is None or POSITIVE.accepts(v)), POSITIVE.describe() + " or null"
    return POSITIVE.accepts, POSITIVE.describe()


def check_model_config(family: str, base: dict[str, Any], overrides: dict[str, Any]) -> None:
    """``--model-config`` overrides of a preset ``base``: known keys, same kinds of value,
    numbers finite and > 0 (every numeric hyperparameter is a size, count or length)."""
    for key, value in overrides.items():
        if key not in base:
            raise ConfigError(f"--model-config: {family!r} has no hyperparameter {key!r}; known: "
                              f"{', '.join(sorted(base))}")
        accepts, rule = _model_value_rule(base[key])
        if not accepts(value):
            raise ConfigError(f"--model-config: {key} must be {rule}, got {value!r}")


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Options from a YAML (or JSON) file; keys may use ``-`` or ``_``."""
    import yaml

    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:160]
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: config must be a mapping of option: value")
    options = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return options


def merge_config(file_options: dict[str, Any], cli_options: dict[str, Any]) -> TrainConfig:
    """Defaults < config file < command line (options given explicitly on the CLI)."""
    merged = {**file_options, **cli_options}
    try:
        cfg = TrainConfig(**merged)
    except TypeError as exc:
        raise ConfigError(f"invalid options: {exc}") from None
    cfg = _coerce(cfg).validate()
    if cfg.init_from and "model" in merged:  # the default --model names no architecture
        from mlip_scaling.training.finetune import check_model_option, load_parent

        check_model_option(cfg.model, load_parent(cfg.init_from))
    return cfg


def _coerce(cfg: TrainConfig) -> TrainConfig:
    """Cast numbers that a YAML file may give as strings or ints ('1e18', 3)."""
    floats = ("lr", "warmup", "min_lr_factor", "weight_decay", "energy_weight", "force_weight",
              "stress_weight", "ema_decay", "clip_grad", "val_size", "test_size")
    ints = ("epochs", "batch_size", "seed", "workers", "val_every", "save_every", "split_seed",
            "threads")
    try:
        for name in floats:
            setattr(cfg, name, float(getattr(cfg, name)))
        for name in ints:
            setattr(cfg, name, int(getattr(cfg, name)))
        for name in ("max_flops", "params"):
            if getattr(cfg, name) is not None:
                setattr(cfg, name, float(getattr(cfg, name)))
        for name in ("train_size", "max_steps", "max_val_structures", "freeze_except"):
            if getattr(cfg, name) is not None:
                setattr(cfg, name, int(getattr(cfg, name)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid option value: {exc}") from None
    return cfg
