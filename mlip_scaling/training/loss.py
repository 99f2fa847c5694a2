"""The training loss (OMat24 recipe); the error metrics are in ``mlip_scaling.accuracy``.

``L = w_E·MAE(E/atom) + w_F·L2MAE(F) + w_S·(MAE(σ_iso) + MAE(σ_aniso))``

* ``E/atom``: total energy divided by the number of atoms (eV/atom), mean over structures;
* ``L2MAE(F)``: mean over atoms of ``|F_pred − F_ref|₂`` (eV/Å);
* ``σ_iso`` = mean of the diagonal of the 3×3 stress (eV/Å^3); ``σ_aniso`` = the
  deviatoric part ``σ − σ_iso·I``, MAE over its nine components. Stress terms average
  only over structures that carry a stress label (mask ``has_stress``).

Everything is computed in float32 (or the dtype of the labels if wider).
"""

from __future__ import annotations

import torch

from mlip_scaling import keys
from mlip_scaling.accuracy import LossWeights, stress_mask, stress_parts

__all__ = ["LossWeights", "loss_terms", "total_loss"]


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def loss_terms(pred: dict, batch: dict) -> dict[str, torch.Tensor]:
    """The four terms of the loss as scalar tensors (eV/atom, eV/Å, eV/Å^3)."""
    n_atoms = batch[keys.NUM_ATOMS].to(torch.float32)
    e_pred, e_ref = _f32(pred[keys.ENERGY]), _f32(batch[keys.ENERGY])
    terms = {"energy": ((e_pred - e_ref).abs() / n_atoms.to(e_pred.dtype)).mean()}
    if keys.FORCES in pred and keys.FORCES in batch:
        diff = _f32(pred[keys.FORCES]) - _f32(batch[keys.FORCES])
        terms["force"] = torch.linalg.vector_norm(diff, dim=-1).mean()
    mask = stress_mask(batch)
    if keys.STRESS in pred and keys.STRESS in batch and bool(mask.any()):
        iso_p, dev_p = stress_parts(_f32(pred[keys.STRESS])[mask])
        iso_r, dev_r = stress_parts(_f32(batch[keys.STRESS])[mask])
        terms["stress_iso"] = (iso_p - iso_r).abs().mean()
        terms["stress_aniso"] = (dev_p - dev_r).abs().mean()
    return terms


def total_loss(terms: dict[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    """Weighted sum of the loss terms (absent terms count zero)."""
    zero = terms["energy"] * 0.0
    loss = weights.energy * terms["energy"]
    loss = loss + weights.force * terms.get("force", zero)
    loss = loss + weights.stress * (terms.get("stress_iso", zero) + terms.get("stress_aniso", zero))
    return loss
