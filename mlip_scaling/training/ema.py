"""Exponential moving average of model weights."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Shadow copy of the floating-point parameters and buffers of ``module``.

    ``decay_t = min(decay, (1 + t) / (10 + t))`` ramps the average up over the first steps,
    so early random weights fade out quickly.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Blend the current weights of ``module`` into the average."""
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for name, value in module.state_dict().items():
            shadow = self.shadow[name]
            if shadow.is_floating_point():
                shadow.mul_(d).add_(value.detach().to(shadow.dtype), alpha=1.0 - d)
            else:
                shadow.copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)

    def copy_to(self, module: nn.Module) -> None:
        """Load the averaged weights into ``module``."""
        module.load_state_dict(self.shadow)
