"""Training options: :class:`TrainConfig` (defined in :mod:`mlip_scaling.train_config`), a
config file and command-line overrides merged and checked (a ``--model`` given next to
``--init-from`` is checked against the source file by the command line)."""

from __future__ import annotations

from typing import Any

from mlip_scaling.errors import ConfigError
from mlip_scaling.train_config import TrainConfig

__all__ = ["TrainConfig", "merge_config"]


def merge_config(file_options: dict[str, Any], cli_options: dict[str, Any]) -> TrainConfig:
    """Defaults < config file < command line (options given explicitly on the CLI)."""
    merged = {**file_options, **cli_options}
    try:
        cfg = TrainConfig(**merged)
    except TypeError as exc:
        raise ConfigError(f"invalid options: {exc}") from None
    cfg.validate()
    return cfg
