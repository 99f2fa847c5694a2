"""The size part of preset names, shared by every family's ladder (no other imports)."""

from __future__ import annotations

__all__ = ["format_size"]


def format_size(n_params: int) -> str:
    """Human size used in preset names: 2300 -> '2.3k', 86_589_068 -> '87M'."""
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n_params >= div:
            value = n_params / div
            return f"{value:.1f}{unit}" if value < 10 else f"{round(value)}{unit}"
    return str(n_params)
