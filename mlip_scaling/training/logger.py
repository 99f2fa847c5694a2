"""Metrics log of a run: ``metrics.jsonl`` (one JSON object a line), TensorBoard if installed."""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["MetricsLogger"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLogger:
    """Appends records ``{"kind": "train"|"val"|event, ...}``; only rank 0 writes."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled

    @functools.cached_property
    def _tb(self) -> Any:
        """TensorBoard writer, made at the first record (nothing is written before)."""
        if not self.enabled:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.path.parent / "tensorboard"))

    def log(self, kind: str, record: dict[str, Any]) -> None:
        """Write one record of ``kind`` (``train``/``val``)."""
        if not self.enabled:
            return
        self._write({"kind": kind, **record})
        if self._tb is not None and "step" in record:
            for name, value in record.items():
                if isinstance(value, (int, float)) and name != "step":
                    self._tb.add_scalar(f"{kind}/{name}", value, record["step"])

    def event(self, name: str, **fields: Any) -> None:
        """Write a named event (e.g. a skipped step)."""
        if self.enabled:
            self._write({"kind": name, **fields})

    def _write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def size(self) -> int:
        """Bytes written so far (stored in the run state)."""
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, size: int) -> None:
        """Drop records written after the state being resumed was saved."""
        if self.enabled and self.path.exists() and self.path.stat().st_size > size:
            with open(self.path, "r+b") as fh:
                fh.truncate(size)
