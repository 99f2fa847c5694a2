"""Progress bars of long work (training steps, labelling, evaluation, relaxations).

One library (rich), on stderr, and only on a terminal: when stderr is redirected to a
file or pipe, or with ``enabled=False`` (``--quiet``), nothing is drawn, so logs hold no
carriage returns or escape codes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["ProgressBar", "track", "interactive"]

T = TypeVar("T")


def interactive() -> bool:
    """Whether stderr is a terminal (progress bars are drawn only there)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class ProgressBar:
    """A bar of ``total`` units (``advance``, ``show`` a few key: value figures; use as a
    context manager); draws nothing unless enabled and stderr is a terminal."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "",
                 enabled: bool = True, transient: bool = False) -> None:
        self._progress: Any = None
        if not (enabled and interactive()):
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[shown]}"), console=Console(file=sys.stderr),
            transient=transient)
        self._task = self._progress.add_task(desc, total=total, completed=initial, shown="")

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, n: int = 1) -> None:
        """``n`` more units done."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def show(self, figures: dict[str, str]) -> None:
        """Figures shown after the bar, e.g. ``{"loss": "0.12"}``."""
        if self._progress is not None:
            text = " ".join(f"{k}={v}" for k, v in figures.items())
            self._progress.update(self._task, shown=text)


def track(items: Iterable[T], total: int, desc: str = "", enabled: bool = True,
          transient: bool = False) -> Iterator[T]:
    """Yield ``items`` while a bar of ``total`` counts them."""
    with ProgressBar(total, desc=desc, enabled=enabled, transient=transient) as bar:
        for item in items:
            yield item
            bar.advance()

