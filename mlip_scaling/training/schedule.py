"""Step-based learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math

import torch

from mlip_scaling.train_config import steps_of

__all__ = ["lr_factor", "warmup_steps", "CosineWarmup"]


def warmup_steps(warmup: float, total_steps: int) -> int:
    """Warm-up length in steps: a fraction of ``total_steps`` when < 1, else a step count."""
    return steps_of(warmup, total_steps)


def lr_factor(step: int, total_steps: int, warmup: int, min_factor: float) -> float:
    """Multiplier of the maximum learning rate at optimizer step ``step`` (0-based).

    Rises linearly over ``warmup`` steps to 1 (``(step + 1) / warmup``), then follows a
    half cosine from 1 at the end of warm-up to ``min_factor`` at ``total_steps``, and stays
    at ``min_factor`` afterwards.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    decay_steps = max(total_steps - warmup, 1)
    progress = min(max(step - warmup, 0) / decay_steps, 1.0)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class CosineWarmup:
    """Sets the learning rate of every parameter group from the step count.

    The state is only the step count, so a resumed run follows the same curve.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_lr: float,
        total_steps: int,
        warmup: int,
        min_factor: float,
    ) -> None:
        self.optimizer, self.max_lr = optimizer, float(max_lr)
        self.total_steps, self.warmup, self.min_factor = int(total_steps), int(warmup), min_factor
        self.step_count = 0
        self._apply()

    def lr(self) -> float:
        """Learning rate of the next optimizer step."""
        factor = lr_factor(self.step_count, self.total_steps, self.warmup, self.min_factor)
        return self.max_lr * factor

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr()

    def step(self) -> None:
        """Advance one step and set the next learning rate."""
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "total_steps": self.total_steps,
                "warmup": self.warmup}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self._apply()
