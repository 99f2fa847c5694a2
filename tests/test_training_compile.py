"""``--compile`` compiles: the model is compiled only after the FLOP probe, whose dispatch
mode would otherwise make torch.compile skip the model's code for the whole process."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.utils
from test_training_helpers import make_trainer, prepared


@pytest.mark.slow  # ~20 CPU-s of compiling
def test_compile_flag_compiles_the_model(tmp_path):
    """Energy-only training (no forces: compile allowed) with --compile."""
    torch._dynamo.reset()
    trainer = make_trainer(tmp_path, prepared(8), prepared(4, seed=1), compile=True,
                           force_weight=0.0, stress_weight=0.0, max_steps=2, epochs=5)
    trainer.prepare(resume=False)
    trainer.fit()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    assert trainer.step == 2 and torch.isfinite(torch.tensor(trainer.last_val["loss"]))
