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
from mlip_scaling.training.config import (
    AMP_CHOICES,
    RANGES,
    TrainConfig,
    load_config_file,
    merge_config,
)

__all__ = ["build_parser", "parse_config", "main"]

D = TrainConfig()
_OUTPUT_FLAGS = ("quiet", "verbose")  # how much is printed: not part of the run's config


def _json_mapping(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _number(group: argparse._ArgumentGroup, flag: str, text: str) -> None:
    """A numeric option: its rule in RANGES is the argparse type, the dataclass its default."""
    name = flag[2:].replace("-", "_")
    group.add_argument(flag, type=RANGES[name], default=getattr(D, name), help=text)


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default=D.model,
                   help="model family (its default preset) or preset name, e.g. transformer-1.2M")
    _number(g, "--params", "pick the preset of the --model family with about this many parameters")
    g.add_argument("--model-config", type=_json_mapping, default=D.model_config,
                   help="JSON object overriding hyperparameters of the preset")
    g.add_argument("--data", default=D.data,
                   help="dataset file (.h5 store, extxyz, ASE db, aselmdb); default: the "
                        "embedded dataset shipped with the package")
    _number(g, "--train-size", "train on a nested subset of this many structures (default: all)")
    _number(g, "--val-size", "validation split: fraction (<1) or number of structures")
    _number(g, "--test-size", "test split held out from training: fraction or number")
    _number(g, "--split-seed", "seed of the split")
    _number(g, "--max-val-structures",
            "validate on at most this many structures of the validation split")
    g.add_argument("--init-from", default=D.init_from, metavar="MODEL.pt",
                   help="fine-tune this model file: its architecture and weights, reference "
                        "energies refitted to --data, new elements added when it can hold them")
    _number(g, "--freeze-except",
            "with --init-from: train only the last N blocks/heads (the head counts as one)")


def _optim_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimisation")
    _number(g, "--epochs", "passes over the training set")
    _number(g, "--max-steps", "stop after this many steps")
    _number(g, "--max-flops", "compute budget in FLOP (training stops when it is spent)")
    _number(g, "--lr", "maximum learning rate (AdamW)")
    _number(g, "--warmup", "linear warm-up: fraction of the steps (<1) or number of steps")
    _number(g, "--min-lr-factor", "final learning rate of the cosine decay, as a fraction of --lr")
    _number(g, "--weight-decay", "AdamW decay")
    _number(g, "--batch-size", "structures per step (global: split over DDP processes)")
    g.add_argument("--amp", nargs="?", const="auto", default=D.amp, choices=AMP_CHOICES,
                   help="mixed precision; --amp alone: bf16 on CUDA with bf16, fp16 + "
                        "GradScaler on older GPUs; on a CPU the faster of bf16 and float32, "
                        "timed in its first steps (float32 without native bf16)")
    _number(g, "--energy-weight", "weight of the energy/atom MAE")
    _number(g, "--force-weight", "weight of the force L2MAE")
    _number(g, "--stress-weight", "weight of each of the isotropic and anisotropic stress MAEs")
    _number(g, "--ema-decay", "EMA decay (0: off)")
    _number(g, "--clip-grad", "gradient-norm clipping (0: off)")
    _number(g, "--seed", "seed of weights and data order")


def _run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--device", default=D.device, help="auto, cpu, cuda, cuda:N")
    g.add_argument("--out", default=D.out,
                   help="run directory (default: runs/<family>-<size>)")
    g.add_argument("--resume", action="store_true", default=D.resume,
                   help="continue the run in --out from its last.pt (fresh start if none)")
    g.add_argument("--allow-data-change", action="store_true", default=D.allow_data_change,
                   help="with --resume: continue on a dataset whose content differs from the "
                        "one the run started on (the export records both hashes)")
    g.add_argument("--export", default=D.export,
                   help="model file name (default: <family>-<size>.pt in the run directory)")
    g.add_argument("--compile", action="store_true", default=D.compile,
                   help="torch.compile the model (direct-force models only)")
    _number(g, "--workers", "data-loading workers")
    _number(g, "--threads",
            "CPU threads of torch (0: torch's default); 1 is often fastest on a "
            "CPU shared with other jobs")
    _number(g, "--val-every", "validate every K steps (0: at the end of every epoch)")
    _number(g, "--save-every", "write the resumable last.pt every K steps (and every epoch)")
    g.add_argument("--config", default=None,
                   help="YAML file with any of these options (flags given here override it)")


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The argument parser (with ``suppress_defaults`` only explicit flags are set)."""
    p = OneLineParser(
        prog="mlip-train", description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter)
    add_version(p)
    for add in (_model_args, _optim_args, _run_args, add_output_flags):
        add(p)
    if suppress_defaults:
        for action in p._actions:
            if action.dest != "help":
                action.default = argparse.SUPPRESS
    return p


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Defaults < ``--config`` file < explicit command-line flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    build_parser().parse_args(argv)  # full validation and --help with defaults
    explicit = vars(build_parser(suppress_defaults=True).parse_args(argv))
    for output_flag in _OUTPUT_FLAGS:
        explicit.pop(output_flag, None)
    config_file = explicit.pop("config", None)
    file_options = load_config_file(config_file) if config_file else {}
    return merge_config(file_options, explicit)


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
