"""Training: config, loss, schedules, EMA, trainer loop, FLOP accounting, CLI.

``mlip-train`` (:mod:`mlip_scaling.training.cli`) from the shell, or from Python::

    from mlip_scaling.training import TrainConfig, run_training
    result = run_training(TrainConfig(model="transformer", epochs=30, amp="auto"))
"""

from mlip_scaling.training.config import TrainConfig
from mlip_scaling.training.runner import run_training

__all__ = ["TrainConfig", "run_training"]
