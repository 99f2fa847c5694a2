"""The training loss (OMat24 recipe) and error metrics.

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

__all__ = ["HAS_STRESS", "LossWeights", "loss_terms", "total_loss", "error_sums", "finish_metrics",
           "add_sums", "loss_from_sums"]

#: Per-structure bool [B]: whether the structure carries a stress label.
HAS_STRESS = "has_stress"


class LossWeights:
    """Weights of the energy, force and stress terms."""

    def __init__(self, energy: float = 2.5, force: float = 20.0, stress: float = 5.0) -> None:
        self.energy, self.force, self.stress = float(energy), float(force), float(stress)


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _stress_parts(stress: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``σ_iso`` [B] and the deviatoric part [B,3,3] of a [B,3,3] stress."""
    iso = torch.diagonal(stress, dim1=1, dim2=2).mean(dim=1)
    eye = torch.eye(3, dtype=stress.dtype, device=stress.device)
    return iso, stress - iso[:, None, None] * eye


def _stress_mask(batch: dict) -> torch.Tensor:
    if HAS_STRESS in batch:
        return batch[HAS_STRESS].bool()
    n = batch[keys.NUM_ATOMS].shape[0]
    return torch.full((n,), keys.STRESS in batch, dtype=torch.bool,
                      device=batch[keys.NUM_ATOMS].device)


def loss_terms(pred: dict, batch: dict) -> dict[str, torch.Tensor]:
    """The four terms of the loss as scalar tensors (eV/atom, eV/Å, eV/Å^3)."""
    n_atoms = batch[keys.NUM_ATOMS].to(torch.float32)
    e_pred, e_ref = _f32(pred[keys.ENERGY]), _f32(batch[keys.ENERGY])
    terms = {"energy": ((e_pred - e_ref).abs() / n_atoms.to(e_pred.dtype)).mean()}
    if keys.FORCES in pred and keys.FORCES in batch:
        diff = _f32(pred[keys.FORCES]) - _f32(batch[keys.FORCES])
        terms["force"] = torch.linalg.vector_norm(diff, dim=-1).mean()
    mask = _stress_mask(batch)
    if keys.STRESS in pred and keys.STRESS in batch and bool(mask.any()):
        iso_p, dev_p = _stress_parts(_f32(pred[keys.STRESS])[mask])
        iso_r, dev_r = _stress_parts(_f32(batch[keys.STRESS])[mask])
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


def error_sums(pred: dict, batch: dict) -> dict[str, float]:
    """Sums of absolute and squared errors of one batch, to be pooled by :func:`finish_metrics`.

    Energy per structure (eV/atom), force per Cartesian component (eV/Å), stress per
    tensor component (eV/Å^3) of labelled structures.
    """
    with torch.no_grad():
        n_atoms = batch[keys.NUM_ATOMS].double()
        de = (pred[keys.ENERGY].double() - batch[keys.ENERGY].double()) / n_atoms
        sums = {"n_e": float(de.numel()), "e_abs": float(de.abs().sum()),
                "e_sq": float((de * de).sum())}
        if keys.FORCES in pred and keys.FORCES in batch:
            df = pred[keys.FORCES].double() - batch[keys.FORCES].double()
            sums.update(n_f=float(df.numel()), f_abs=float(df.abs().sum()),
                        f_sq=float((df * df).sum()))
            sums.update(n_atoms=float(len(df)), f_l2=float(torch.linalg.vector_norm(df, dim=-1)
                                                           .sum()))
        mask = _stress_mask(batch)
        if keys.STRESS in pred and keys.STRESS in batch and bool(mask.any()):
            p, r = pred[keys.STRESS].double()[mask], batch[keys.STRESS].double()[mask]
            ds = p - r
            (iso_p, dev_p), (iso_r, dev_r) = _stress_parts(p), _stress_parts(r)
            sums.update(n_s=float(ds.numel()), s_abs=float(ds.abs().sum()),
                        s_sq=float((ds * ds).sum()), n_sb=float(len(ds)),
                        s_iso=float((iso_p - iso_r).abs().sum()),
                        s_aniso=float((dev_p - dev_r).abs().sum()))
    return sums


def loss_from_sums(sums: dict[str, float], weights: LossWeights) -> float:
    """The loss of a whole dataset from pooled :func:`error_sums` (same terms as training)."""
    loss = weights.energy * sums["e_abs"] / sums["n_e"]
    if sums.get("n_atoms"):
        loss += weights.force * sums["f_l2"] / sums["n_atoms"]
    if sums.get("n_sb"):
        loss += weights.stress * (sums["s_iso"] / sums["n_sb"] + sums["s_aniso"] / sums["n_s"])
    return float(loss)


def finish_metrics(sums: dict[str, float]) -> dict[str, float | None]:
    """MAE / RMSE from pooled sums: energy_mae/rmse, force_mae/rmse, stress_mae/rmse."""
    out: dict[str, float | None] = {}
    for short, name in (("e", "energy"), ("f", "force"), ("s", "stress")):
        n = sums.get(f"n_{short}", 0.0)
        out[f"{name}_mae"] = sums[f"{short}_abs"] / n if n else None
        out[f"{name}_rmse"] = (sums[f"{short}_sq"] / n) ** 0.5 if n else None
    return out


def add_sums(total: dict[str, float], new: dict[str, float]) -> dict[str, float]:
    """Pool two dicts of error sums."""
    for k, v in new.items():
        total[k] = total.get(k, 0.0) + v
    return total
