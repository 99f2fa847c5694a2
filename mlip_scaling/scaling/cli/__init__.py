"""``mlip-scaling``: sweeps, evaluation, scaling-law fits, reports and bias/expressivity.

Subcommands: sweep, evaluate, fit, report, plan, bias, import-fairchem, export
(``mlip-scaling COMMAND --help``). Each module here parses one group of subcommands and
prints their results; the work is done by the library modules of :mod:`mlip_scaling.scaling`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mlip_scaling.cli_args import run_subcommand, subcommand_parser
from mlip_scaling.errors import cli_entry
from mlip_scaling.scaling.cli.analysis import add_bias, add_fit, add_report
from mlip_scaling.scaling.cli.models import add_export, add_import_fairchem
from mlip_scaling.scaling.cli.plan import add_plan
from mlip_scaling.scaling.cli.runs import add_evaluate, add_sweep

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    return subcommand_parser("mlip-scaling", __doc__.split("\n\n")[0],
                             (add_sweep, add_evaluate, add_fit, add_report, add_plan, add_bias,
                              add_import_fairchem, add_export))


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mlip-scaling``."""
    return run_subcommand(_parser(), argv)
