"""``mlip-scaling import-fairchem CKPT.pt [--out NAME.pt]``: convert a fairchem checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``import-fairchem``."""
    parser.add_argument("checkpoint", help="fairchem-core 1.x EquiformerV2 checkpoint (.pt)")
    parser.add_argument("--out", default=None,
                        help="model file to write (default: CHECKPOINT with suffix .mlip.pt)")


def run(args: argparse.Namespace) -> int:
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
