"""``mlip-scaling import-fairchem`` and ``export``: model-file conversions."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlip_scaling.errors import ConfigError

__all__ = ["add_import_fairchem", "add_export"]


def _output(source: Path, given: str | None, suffix: str, what: str,
            error: type[Exception]) -> Path:
    """``--out`` (default: ``source`` with ``suffix``), refused when it is ``source``."""
    out = Path(given) if given else source.with_suffix(suffix)
    if out.resolve() == source.resolve():
        raise error(f"{out}: --out would overwrite {what}")
    return out


def _import_fairchem(args: argparse.Namespace) -> int:
    """Read the checkpoint safely, convert it, write an ``mlip-scaling/1`` file."""
    from mlip_scaling.io_utils import atomic_torch_save
    from mlip_scaling.models.equiformer_v2.fairchem_import import (
        FairchemFileError,
        import_fairchem,
    )

    source = Path(args.checkpoint)
    out = _output(source, args.out, ".mlip.pt", "the fairchem checkpoint", FairchemFileError)
    converted = import_fairchem(source, args.weights)
    atomic_torch_save(converted, out)
    train = converted["train"]
    print(f"wrote {out}: {converted['model']['family']}, {train['n_params']:,} parameters "
          f"(weights: {train['weights']}), sha256 of source "
          f"{train['source_sha256'][:12]}")
    return 0


def _converter(sub: argparse._SubParsersAction, fmt: type, name: str, about: str,
               source: tuple[str, str], out_help: str) -> argparse.ArgumentParser:
    """A subcommand that reads one file (``source``: its name and help) and writes one."""
    p = sub.add_parser(name, formatter_class=fmt, help=about)
    p.add_argument(source[0], help=source[1])
    p.add_argument("--out", default=None, help=out_help)
    return p


def add_import_fairchem(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``import-fairchem`` subcommand."""
    p = _converter(sub, fmt, "import-fairchem", "convert a fairchem EquiformerV2 (OMat24) "
                   "or GemNet-OC checkpoint to a model file", ("checkpoint", "fairchem-core "
                   "1.x EquiformerV2 or GemNet-OC checkpoint (.pt)"), "model file to write "
                   "(default: CHECKPOINT with suffix .mlip.pt)")
    p.add_argument("--weights", choices=["state_dict", "ema"], default="state_dict",
                   help="state_dict: what fairchem's OCPCalculator predicts with, on every "
                        "file layout; ema: the EMA shadow weights of a file saved with "
                        "training state (recorded in the model file's train.weights)")
    p.set_defaults(func=_import_fairchem)


def _export(args: argparse.Namespace) -> int:
    """Export the model file and print what was written."""
    import torch

    from mlip_scaling.cli_args import check_output_file
    from mlip_scaling.export import save_exported

    source = Path(args.model)
    out = _output(source, args.out, ".pt2", "the model file", ConfigError)
    check_output_file(str(out), "--out")
    meta = save_exported(source, out, getattr(torch, args.dtype))
    print(f"wrote {out}: torch.export program of {meta['family']} ({meta['dtype']}, "
          f"cutoff {meta['cutoff']} Å, species {meta['species']})")
    return 0


def add_export(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``export`` subcommand."""
    p = _converter(sub, fmt, "export", "write a torch.export program (.pt2) of a model file",
                   ("model", "model file (.pt) to export"),
                   "program file to write (default: MODEL with suffix .pt2)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="floating-point dtype of the program's inputs and weights")
    p.set_defaults(func=_export)
