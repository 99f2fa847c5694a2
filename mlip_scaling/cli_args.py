"""Command-line checking shared by the three CLIs: numeric ranges, output paths, one-line errors.

A :class:`Number` is both an argparse ``type=`` (text -> checked value) and a checker of
values that come from a config file, so a flag and its config-file key obey one rule.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from mlip_scaling.errors import ConfigError

__all__ = ["Number", "OneLineParser", "HelpFormatter", "add_output_flags", "add_version",
           "run_command", "POSITIVE", "NON_NEGATIVE", "POSITIVE_INT", "NON_NEGATIVE_INT",
           "SEED", "FRACTION", "OPEN_FRACTION", "check_output_dir", "check_output_file",
           "output_dir", "output_file", "subcommand_parser", "run_subcommand"]


def _bound(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if value == int(value) else f"{value:g}"


@dataclass(frozen=True)
class Number:
    """A finite int or float in ``[low, high]`` (``low_open``/``high_open``: bound excluded)."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        """The rule in words, e.g. ``a finite number > 0`` or ``a whole number in [2, 4096]``."""
        kind = "a whole number" if self.integer else "a finite number"
        low, high = _bound(self.low), _bound(self.high)
        if low and high:
            return (f"{kind} in {'(' if self.low_open else '['}{low}, {high}"
                    f"{')' if self.high_open else ']'}")
        if low:
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        if high:
            return f"{kind} {'<' if self.high_open else '<='} {high}"
        return kind

    def accepts(self, value: float) -> bool:
        """Whether ``value`` (already a number) obeys the rule."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value) or (self.integer and value != int(value)):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or
                                         (self.high_open and value == self.high))

    def __call__(self, text: str) -> int | float:
        """argparse ``type=``: parse ``text`` (``1e3`` is fine for whole numbers) and check."""
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not self.accepts(value):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return int(value) if self.integer else value

    def value(self, option: str, raw: object) -> int | float:
        """A number from a file or list entry (number or numeric text), checked."""
        try:
            number = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(raw, bool) or not self.accepts(number):
            raise ConfigError(f"{option} must be {self.describe()}, got {raw!r}")
        return int(number) if self.integer else number

    def check(self, option: str, value: float | None) -> None:
        """Raise :class:`ConfigError` naming ``option`` unless ``value`` obeys (None passes)."""
        if value is not None and not self.accepts(value):
            raise ConfigError(f"{option} must be {self.describe()}, got {value!r}")


POSITIVE = Number(low=0, low_open=True)
NON_NEGATIVE = Number(low=0)
POSITIVE_INT = Number(integer=True, low=1)
NON_NEGATIVE_INT = Number(integer=True, low=0)
SEED = Number(integer=True, low=0, high=2**63 - 1)
FRACTION = Number(low=0, high=1)
OPEN_FRACTION = Number(low=0, high=1, high_open=True)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one-line :class:`ConfigError` s (exit 2 via
    :func:`mlip_scaling.errors.cli_entry`), not a usage block."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_writable(directory: Path, option: str, target: Path) -> None:
    if not directory.is_dir():
        raise ConfigError(f"{option} {target}: {directory} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ConfigError(f"{option} {target}: cannot write in {directory} "
                          f"({exc.strerror or type(exc).__name__})") from None


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` is (or can be made) a directory we can write in; else a one-line error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: exists and is not a directory")
    _probe_writable(_nearest_existing(path), option, path)
    return path


def check_output_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` names a file (not a directory) that we can create or replace."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory; give a file name")
    _probe_writable(_nearest_existing(path.parent), option, path)
    return path


def _argparse_check(check: Callable[[str, str], Path], text: str) -> str:
    """Run ``check(text, option)`` as an argparse ``type=`` (its message without the
    option name, which argparse adds)."""
    try:
        check(text, "path")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("path ")) from None
    return text


def output_dir(text: str) -> str:
    """argparse ``type=`` of an output directory (checked writable up front)."""
    return _argparse_check(check_output_dir, text)


def output_file(text: str) -> str:
    """argparse ``type=`` of an output file (not a directory; its folder writable)."""
    return _argparse_check(check_output_file, text)


_SAYS_DEFAULT = re.compile(r"\(default|\bdefault\s*[:=]", re.IGNORECASE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` once: not when the help text already states the default
    ("(default ...", "default: ..."), nor for flags whose default is "off" (None, False,
    a count of 0), nor for switches (``--no-downstream`` stores False when given: its
    destination's True is not the flag's default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (_SAYS_DEFAULT.search(text) or action.default in (None, False)
                or isinstance(action, (argparse._CountAction, argparse._StoreConstAction))):
            return text
        return super()._get_help_string(action)


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` and ``-v/--verbose`` (repeatable) of every command."""
    group = parser.add_argument_group("output")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars, tables or notes (results, failures and "
                            "errors are still printed; written files are unaffected)")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="print more detail (every fit row, each model's metrics, the "
                            "resolved settings) and the command's run time")


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the package version."""
    from mlip_scaling._version import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")


def subcommand_parser(prog: str, description: str,
                      adders: Sequence[Callable[[Any, type], None]]) -> argparse.ArgumentParser:
    """The parser of a command with subcommands: ``--version``, one subcommand per function
    of ``adders`` (called as ``add(subparsers, HelpFormatter)``, each setting ``func``), and
    ``-q``/``-v`` on every subcommand."""
    parser = OneLineParser(prog=prog, description=description, formatter_class=HelpFormatter)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in adders:
        add(sub, HelpFormatter)
    for command in sub.choices.values():
        add_output_flags(command)
    return parser


def run_subcommand(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen subcommand's ``func`` (see :func:`run_command`)."""
    args = parser.parse_args(argv)
    return run_command(args, args.func)


def run_command(args: argparse.Namespace, func: Callable[[argparse.Namespace], int]) -> int:
    """``func(args)``; with ``--verbose`` the run time and exit status follow on stderr."""
    start = time.perf_counter()
    status = func(args)
    if args.verbose:
        print(f"done in {time.perf_counter() - start:.1f} s (exit status {status})",
              file=sys.stderr)
    return status
