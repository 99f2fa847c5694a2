"""Deterministic train/val/test splits and nested training subsets."""

from __future__ import annotations

import numpy as np

__all__ = ["split_indices", "nested_subset"]


def _count(size: int | float, n: int, name: str) -> int:
    if isinstance(size, float) and 0.0 <= size < 1.0:
        return int(round(size * n))
    count = int(size)
    if count < 0 or count != size:
        raise ValueError(f"{name} must be a count >= 0 or a fraction in [0, 1), got {size}")
    return count


def split_indices(
    n: int, val_size: int | float = 0.05, test_size: int | float = 0.05, seed: int = 0
) -> dict[str, np.ndarray]:
    """Disjoint ``train``/``val``/``test`` index arrays of ``n`` structures.

    Sizes are counts (int) or fractions (float < 1). Test comes first in one fixed
    permutation, then val, then train, so changing ``val_size`` never moves test items.
    """
    n_test, n_val = _count(test_size, n, "test_size"), _count(val_size, n, "val_size")
    if n_test + n_val > n:
        raise ValueError(f"val ({n_val}) + test ({n_test}) exceed the {n} structures")
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    return {
        "test": np.sort(order[:n_test]),
        "val": np.sort(order[n_test : n_test + n_val]),
        "train": order[n_test + n_val :],
    }


def nested_subset(train: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """The first ``n`` of one fixed permutation of ``train``: smaller subsets nest in larger."""
    train = np.asarray(train)
    if not 0 <= n <= len(train):
        raise ValueError(f"subset size {n} outside [0, {len(train)}]")
    order = np.random.default_rng([seed, 0xD47A]).permutation(len(train))
    return train[order[:n]]
