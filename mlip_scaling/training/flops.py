"""FLOP accounting of real training steps.

A training step = forward (energy), the force/stress backward (``create_graph=True``) and
the parameter backward. :class:`torch.utils.flop_counter.FlopCounterMode` counts the
matmul/convolution/attention FLOPs of a few sample steps; a non-negative linear model in
the batch's atoms, edges and atom pairs (``Σ_b n_b²``, for models with attention over all
atoms of a structure) then predicts every step actually taken. 1 PF-day = 8.64e19 FLOP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch.utils.flop_counter import FlopCounterMode

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import AtomicData

__all__ = ["PF_DAY", "batch_features", "count_flops", "FlopModel", "pf_days"]

PF_DAY = 8.64e19  # FLOP in one petaFLOP/s-day


def pf_days(flops: float) -> float:
    """FLOPs expressed in PF-days."""
    return float(flops) / PF_DAY


def batch_features(batch: AtomicData) -> np.ndarray:
    """[atoms, edges, atom pairs] of a collated batch (the FLOP model's inputs)."""
    n = batch[keys.NUM_ATOMS].double()
    edges = batch[keys.EDGE_INDEX].shape[1] if keys.EDGE_INDEX in batch else 0
    return np.array([float(n.sum()), float(edges), float((n * n).sum())])


def count_flops(step: Callable[[AtomicData], object], batch: AtomicData) -> int:
    """FLOPs counted by FlopCounterMode while ``step(batch)`` runs (one training step)."""
    with FlopCounterMode(display=False) as counter:
        step(batch)
    return int(counter.get_total_flops())


class FlopModel:
    """``flops ≈ c0 + c_atoms·atoms + c_edges·edges + c_pairs·pairs`` with ``c ≥ 0``."""

    def __init__(self, coef: Sequence[float] = (0.0, 0.0, 0.0, 0.0)) -> None:
        self.coef = np.asarray(coef, dtype=np.float64)

    @classmethod
    def fit(cls, features: Sequence[np.ndarray], flops: Sequence[float]) -> FlopModel:
        """Non-negative least squares on relative errors of the sample steps."""
        from scipy.optimize import nnls

        x = np.column_stack([np.ones(len(features)), np.asarray(features, dtype=np.float64)])
        y = np.asarray(flops, dtype=np.float64)
        weight = 1.0 / np.maximum(y, 1.0)  # relative error: small batches count as much
        col = np.maximum(np.abs(x).max(axis=0), 1.0)  # column scaling for conditioning
        coef, _ = nnls(x * weight[:, None] / col, y * weight)
        return cls(coef / col)

    @classmethod
    def measure(
        cls, step: Callable[[AtomicData], object], batches: Sequence[AtomicData]
    ) -> tuple[FlopModel, list[int]]:
        """Count FLOPs of ``step`` on each sample batch and fit the model."""
        counted = [count_flops(step, b) for b in batches]
        return cls.fit([batch_features(b) for b in batches], counted), counted

    def predict(self, features: np.ndarray) -> float:
        """Predicted FLOPs of one step on a batch with these features."""
        return float(self.coef[0] + np.dot(self.coef[1:], features))

    def state_dict(self) -> dict:
        return {"coef": [float(c) for c in self.coef]}

    @classmethod
    def from_state(cls, state: dict) -> FlopModel:
        return cls(state["coef"])
