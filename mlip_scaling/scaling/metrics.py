"""Test-split metrics of a potential: energy/atom, force and stress MAE/RMSE and the loss.

The error sums and the loss are those of training (``mlip_scaling.training.loss``):
L = 2.5·MAE(E/atom) + 20·L2MAE(F) + 5·MAE(σ_iso) + 5·MAE(σ_aniso), with σ_iso the mean of
the diagonal and σ_aniso the deviatoric part; stress terms only over labelled structures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlip_scaling.models.potential import Potential

__all__ = ["test_metrics"]


def test_metrics(potential: Potential, source: Any, indices: Sequence[int],
                 batch_size: int = 16) -> dict[str, float | None]:
    """energy_mae/rmse (eV/atom), force_mae/rmse (eV/Å), stress_mae/rmse (eV/Å^3), test_loss.

    ``source[i]`` are labelled structures (store items or ASE Atoms); the potential is run
    in its own dtype on the CPU, in batches of ``batch_size`` structures.
    """
    from mlip_scaling.data.atomic_data import collate
    from mlip_scaling.training import data as tdata
    from mlip_scaling.training.loss import (
        LossWeights,
        add_sums,
        error_sums,
        finish_metrics,
        loss_from_sums,
    )

    dtype = potential.dtype
    items = tdata.prepare(source, indices, potential.cutoff, {}, "test split", dtype)
    sums: dict[str, float] = {}
    for k in range(0, len(items), batch_size):
        batch = collate(items[k:k + batch_size])
        sums = add_sums(sums, error_sums(potential(batch), batch))
    metrics: dict[str, float | None] = dict(finish_metrics(sums))
    metrics["test_loss"] = loss_from_sums(sums, LossWeights())
    return metrics


test_metrics.__test__ = False  # not a pytest test despite the name
