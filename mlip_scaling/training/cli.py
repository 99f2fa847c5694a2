"""``mlip-train``: train one potential -> run directory (last.pt, metrics.jsonl) + model file.

Examples::

    mlip-train --epochs 30 --amp                          # default preset, embedded dataset
    mlip-train --model transformer --params 1e6 --train-size 2000 --out runs/t1M-2k
    mlip-train --config run.yaml --lr 1e-3                # flags override the file
    mlip-train --init-from cu.pt --data cuni.h5 --freeze-except 2 --lr 5e-4   # fine-tune
    torchrun --nproc-per-node 4 -m mlip_scaling.training.cli --model eqv2-1.8M --amp
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from mlip_scaling.cli_args import (
    HelpFormatter,
    OneLineParser,
    add_output_flags,
    add_version,
    run_command,
)
from mlip_scaling.errors import ConfigError, cli_entry
from mlip_scaling.procs import keep_freed_memory
from mlip_scaling.train_config import add_train_arguments, explicit_options, load_config_file
from mlip_scaling.training.config import TrainConfig, merge_config

__all__ = ["build_parser", "parse_config", "main"]

_OWN_FLAGS = ("quiet", "verbose")  # how much is printed: not part of the run's config


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one flag per TrainConfig field, ``--config``, output flags."""
    p = OneLineParser(
        prog="mlip-train", description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter)
    add_version(p)
    add_train_arguments(p)
    p.add_argument("--config", default=None,
                   help="YAML file with any of these options (flags given here override it)")
    add_output_flags(p)
    return p


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Defaults < ``--config`` file < explicit command-line flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    build_parser().parse_args(argv)  # full validation and --help with defaults
    explicit = explicit_options(build_parser(), argv)
    for own_flag in _OWN_FLAGS:
        explicit.pop(own_flag, None)
    config_file = explicit.pop("config", None)
    file_options = load_config_file(config_file) if config_file else {}
    cfg = merge_config(file_options, explicit)
    if cfg.init_from and "model" in {**file_options, **explicit}:  # the default names none
        from mlip_scaling.training.finetune import check_model_option, load_parent

        check_model_option(cfg.model, load_parent(cfg.init_from))
    return cfg


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or (
        "can't allocate memory" in text)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mlip-train``."""
    keep_freed_memory()  # the same large tensors every step: reuse, do not re-map
    cfg = parse_config(argv)
    output = build_parser().parse_args(argv)
    return run_command(output, lambda flags: _train(cfg, flags))


def _train(cfg: TrainConfig, flags: argparse.Namespace) -> int:
    from dataclasses import asdict

    from mlip_scaling.training.runner import run_training

    if flags.verbose:
        print(json.dumps(asdict(cfg), indent=1, default=str), file=sys.stderr)
    try:
        run_training(cfg, verbose=not flags.quiet)
    except RuntimeError as exc:
        if not _is_oom(exc):
            raise
        smaller = max(1, cfg.batch_size // 2)
        raise ConfigError(f"out of memory at --batch-size {cfg.batch_size}: retry with "
                          f"--batch-size {smaller} (or a smaller model)") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
