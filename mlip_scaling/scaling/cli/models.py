"""``mlip-scaling import-fairchem`` and ``export``: model-file conversions."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlip_scaling.errors import ConfigError

__all__ = ["add_import_fairchem", "add_export"]


def _import_fairchem(args: argparse.Namespace) -> int:
    """Read the checkpoint safely, convert it, write an ``mlip-scaling/1`` file."""
    from mlip_scaling.io_utils import atomic_torch_save
    from mlip_scaling.models.equiformer_v2.fairchem_import import (
        FairchemFileError,
        import_fairchem,
    )

    source = Path(args.checkpoint)
    out = Path(args.out) if args.out else source.with_suffix(".mlip.pt")
    if out.resolve() == source.resolve():
        raise FairchemFileError(f"{out}: --out would overwrite the fairchem checkpoint")
    converted = import_fairchem(source)
    atomic_torch_save(converted, out)
    train = converted["train"]
    print(f"wrote {out}: eqv2, {train['n_params']:,} parameters "
          f"({'EMA' if train['ema'] else 'plain'} weights), sha256 of source "
          f"{train['source_sha256'][:12]}")
    return 0


def add_import_fairchem(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``import-fairchem`` subcommand."""
    p = sub.add_parser("import-fairchem", formatter_class=fmt,
                       help="convert a fairchem EquiformerV2 (OMat24) checkpoint to a model file")
    p.add_argument("checkpoint", help="fairchem-core 1.x EquiformerV2 checkpoint (.pt)")
    p.add_argument("--out", default=None,
                   help="model file to write (default: CHECKPOINT with suffix .mlip.pt)")
    p.set_defaults(func=_import_fairchem)


def _export(args: argparse.Namespace) -> int:
    """Export the model file and print what was written."""
    import torch

    from mlip_scaling.cli_args import check_output_file
    from mlip_scaling.export import save_exported

    source = Path(args.model)
    out = Path(args.out) if args.out else source.with_suffix(".pt2")
    if out.resolve() == source.resolve():
        raise ConfigError(f"{out}: --out would overwrite the model file")
    check_output_file(str(out), "--out")
    meta = save_exported(source, out, getattr(torch, args.dtype))
    print(f"wrote {out}: torch.export program of {meta['family']} ({meta['dtype']}, "
          f"cutoff {meta['cutoff']} Å, species {meta['species']})")
    return 0


def add_export(sub: argparse._SubParsersAction, fmt: type) -> None:
    """The ``export`` subcommand."""
    p = sub.add_parser("export", formatter_class=fmt,
                       help="write a torch.export program (.pt2) of a model file")
    p.add_argument("model", help="model file (.pt) to export")
    p.add_argument("--out", default=None,
                   help="program file to write (default: MODEL with suffix .pt2)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="floating-point dtype of the program's inputs and weights")
    p.set_defaults(func=_export)
