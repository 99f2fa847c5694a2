"""Deterministic train/val/test splits and nested training subsets.

:class:`SplitSpec` is the whole definition of a split; every model file stores it
(``train.split``), and :meth:`SplitSpec.from_checkpoint` reads it back, so training,
evaluation and the bias analysis all see the same test set.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from mlip_scaling.errors import ConfigError

__all__ = ["SplitSpec", "split_indices", "nested_subset"]


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


def _size(value: Any, name: str) -> int | float:
    """A split size: a count when >= 1 (stored as int), else a fraction in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
    return int(value) if value >= 1 else float(value)


@dataclass(frozen=True)
class SplitSpec:
    """How a dataset of ``n`` structures is split (sizes: counts >= 1 or fractions < 1).

    ``train_size``: the nested subset of the training split actually trained on (None: all
    of it); it never moves the validation or test structures.
    """

    val_size: int | float = 0.05
    test_size: int | float = 0.05
    seed: int = 0
    train_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "val_size", _size(self.val_size, "val_size"))
        object.__setattr__(self, "test_size", _size(self.test_size, "test_size"))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | float) or (
                self.seed < 0 or self.seed != int(self.seed)):
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if self.train_size is not None and (isinstance(self.train_size, bool) or not isinstance(
                self.train_size, int) or self.train_size < 1):
            raise ConfigError(f"train_size must be a count >= 1, got {self.train_size!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as stored in a model file's ``train.split``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitSpec:
        """The inverse of :meth:`to_dict`; absent fields take their defaults (files written
        before ``train_size`` was stored give the same split)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> SplitSpec:
        """The split a model file (``train.split``) or a run state (its ``config``:
        ``val_size``, ``test_size``, ``split_seed``, ``train_size``) was trained with."""
        split = (ckpt.get("train") or {}).get("split")
        if split is not None:
            return cls.from_dict(split)
        config = ckpt.get("config") or {}
        renamed = {"split_seed": "seed", "val_size": "val_size", "test_size": "test_size",
                   "train_size": "train_size"}
        return cls.from_dict({new: config[old] for old, new in renamed.items() if old in config})

    def indices(self, n: int, where: str = "dataset") -> dict[str, np.ndarray]:
        """``train`` (the nested subset), ``val`` and ``test`` index arrays of ``n``
        structures; ConfigError naming ``where`` when the split cannot be made."""
        try:
            split = split_indices(n, self.val_size, self.test_size, self.seed)
        except ValueError as exc:
            raise ConfigError(f"{where}: cannot split {n} structures: {exc}") from None
        train = split["train"]
        if self.train_size is not None:
            if self.train_size > len(train):
                raise ConfigError(f"--train-size {self.train_size} exceeds the {len(train)} "
                                  f"structures of the training split of {where}")
            train = nested_subset(train, self.train_size, seed=self.seed)
        if len(train) == 0:
            raise ConfigError(f"{where}: the training subset is empty")
        if len(split["val"]) == 0:
            raise ConfigError(f"{where}: the validation split is empty (raise --val-size)")
        return {"train": np.asarray(train), "val": split["val"], "test": split["test"]}
