"""Errors with one-line messages, and the wrapper that turns them into CLI exits."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

__all__ = ["MlipError", "DataError", "ConfigError", "cli_entry"]


class MlipError(Exception):
    """Base class: the message is one line naming the file/structure and the problem."""


class DataError(MlipError, ValueError):
    """Unreadable or invalid dataset / structure (names the file and structure index)."""


class ConfigError(MlipError, ValueError):
    """Invalid option, preset, config file or combination of settings."""


def cli_entry(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Decorate a CLI ``main(argv) -> exit code``: known errors exit 2 with one line."""

    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except (MlipError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    wrapped.__name__ = main.__name__
    wrapped.__doc__ = main.__doc__
    return wrapped
