"""``mlip-scaling``: sweeps, evaluation, scaling-law fits, reports and bias/expressivity.

Subcommands: sweep, evaluate, fit, report, bias, import-fairchem, export
(``mlip-scaling COMMAND --help``). Each module here parses one group of subcommands and
prints their results; the work is done by the library modules of :mod:`mlip_scaling.scaling`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mlip_scaling.cli_args import (
    HelpFormatter,
    OneLineParser,
    add_output_flags,
    add_version,
    run_command,
)
from mlip_scaling.errors import cli_entry
from mlip_scaling.scaling.cli.analysis import add_bias, add_fit, add_report
from mlip_scaling.scaling.cli.models import add_export, add_import_fairchem
from mlip_scaling.scaling.cli.runs import add_evaluate, add_sweep

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="mlip-scaling", description=__doc__.split("\n\n")[0],
                           formatter_class=HelpFormatter)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_sweep, add_evaluate, add_fit, add_report, add_bias, add_import_fairchem,
                add_export):
        add(sub, HelpFormatter)
    for command in sub.choices.values():
        add_output_flags(command)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mlip-scaling``."""
    args = _parser().parse_args(argv)
    return run_command(args, args.func)
