"""Early stopping on the validation loss, keeping the best-validation weights.

A validation *improves* when its loss is below ``best * (1 - min_delta)`` (a relative
improvement of at least ``min_delta``). Training stops after ``patience`` validations in a
row without improvement, once the run has reached ``min_step`` (validations before it still
count towards the patience); the run is then *converged*. The weights of the best validation
(the evaluated ones: EMA weights when EMA is on) are kept so that the export can use them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Best validation loss, its step and weights, and the count of validations since."""

    def __init__(self, patience: int | None, min_delta: float, val_every: int,
                 min_step: int = 0) -> None:
        self.patience, self.min_delta, self.val_every = patience, float(min_delta), val_every
        self.min_step = int(min_step)  # no stop before this step
        self.last_step = 0  # step of the last validation
        self.best_loss = math.inf
        self.best_step: int | None = None
        self.best_metrics: dict[str, Any] = {}
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.since_best = 0  # validations since the best one
        self.validations = 0

    @property
    def active(self) -> bool:
        return self.patience is not None

    @property
    def stopped(self) -> bool:
        """Whether ``patience`` validations in a row brought no improvement, at or after
        ``min_step``."""
        return (self.active and self.since_best >= self.patience
                and self.last_step >= self.min_step)

    def improves(self, loss: float) -> bool:
        """Whether ``loss`` beats the best by at least the relative ``min_delta``."""
        if not math.isfinite(loss):
            return False
        if not math.isfinite(self.best_loss):
            return True
        return loss < self.best_loss - self.min_delta * abs(self.best_loss)

    def update(self, step: int, metrics: dict[str, Any], weights: dict[str, torch.Tensor]
               ) -> bool:
        """Record one validation (``metrics["loss"]``, the evaluated ``weights``); returns
        whether it improved. Weights are copied only when the criterion is active."""
        self.validations, self.last_step = self.validations + 1, int(step)
        loss = float(metrics.get("loss") if metrics.get("loss") is not None else math.nan)
        if not self.improves(loss):
            self.since_best += 1
            return False
        self.best_loss, self.best_step, self.since_best = loss, step, 0
        self.best_metrics = dict(metrics)
        if self.active:
            self.best_weights = {k: v.detach().cpu().clone() for k, v in weights.items()}
        return True

    def criterion(self) -> dict[str, Any]:
        """The stopping rule, as recorded in model files."""
        return {"monitor": "validation loss", "patience": self.patience,
                "min_delta": self.min_delta, "mode": "relative", "min_steps": self.min_step,
                "val_every_steps": self.val_every or None}

    def record(self) -> dict[str, Any]:
        """``train`` fields of a model file: converged (None without a criterion), best step."""
        return {"converged": self.stopped if self.active else None,
                "best_step": self.best_step,
                "best_val_loss": self.best_loss if math.isfinite(self.best_loss) else None,
                "validations_since_best": self.since_best,
                "stop_criterion": self.criterion()}

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_step": self.best_step,
                "best_metrics": self.best_metrics, "best_weights": self.best_weights,
                "since_best": self.since_best, "validations": self.validations,
                "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore (a state of an earlier version without early stopping: start afresh)."""
        if not state:
            return
        self.best_loss = float(state["best_loss"])
        self.best_step = state["best_step"]
        self.best_metrics = dict(state["best_metrics"])
        self.best_weights = state["best_weights"]
        self.since_best, self.validations = int(state["since_best"]), int(state["validations"])
        self.last_step = int(state.get("last_step") or 0)
