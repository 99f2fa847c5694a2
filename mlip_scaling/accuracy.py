"""Errors of predictions against labels: pooled sums, MAE/RMSE and the loss from sums.

Shared by training (validation) and evaluation (test split), so both measure the same way:

* energy per structure in eV/atom, force per Cartesian component in eV/Å, stress per
  tensor component in eV/Å^3 over the structures that carry a stress label
  (:data:`mlip_scaling.keys.HAS_STRESS`);
* the loss ``w_E·MAE(E/atom) + w_F·L2MAE(F) + w_S·(MAE(σ_iso) + MAE(σ_aniso))`` with
  ``σ_iso`` the mean of the diagonal and ``σ_aniso`` the deviatoric part.

Sums of several batches (or DDP ranks) add; :func:`finish_metrics` turns them into metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mlip_scaling import keys

__all__ = ["LossWeights", "SUM_NAMES", "METRIC_FUNCTIONS", "stress_parts", "stress_mask",
           "error_sums", "add_sums", "finish_metrics", "loss_from_sums"]

#: every key :func:`error_sums` may return (counts ``n_*`` and sums), in a fixed order
SUM_NAMES = ("n_e", "e_abs", "e_sq", "n_f", "f_abs", "f_sq", "n_atoms", "f_l2", "n_s",
             "s_abs", "s_sq", "n_sb", "s_iso", "s_aniso")


class LossWeights:
    """Weights of the energy, force and stress terms (defaults: the OMat24 recipe)."""

    def __init__(self, energy: float = 2.5, force: float = 20.0, stress: float = 5.0) -> None:
        self.energy, self.force, self.stress = float(energy), float(force), float(stress)


def stress_parts(stress: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``σ_iso`` [B] and the deviatoric part [B,3,3] of a [B,3,3] stress."""
    iso = torch.diagonal(stress, dim1=1, dim2=2).mean(dim=1)
    eye = torch.eye(3, dtype=stress.dtype, device=stress.device)
    return iso, stress - iso[:, None, None] * eye


def stress_mask(batch: dict) -> torch.Tensor:
    """[B] bool: the structures whose stress label counts."""
    if keys.HAS_STRESS in batch:
        return batch[keys.HAS_STRESS].bool()
    n = batch[keys.NUM_ATOMS].shape[0]
    return torch.full((n,), keys.STRESS in batch, dtype=torch.bool,
                      device=batch[keys.NUM_ATOMS].device)


def error_sums(pred: dict, batch: dict) -> dict[str, float]:
    """Sums of absolute and squared errors of one batch (keys from :data:`SUM_NAMES`).

    Every sum is computed on the batch's device and copied to the host in one transfer
    (one synchronisation per batch on a GPU)."""
    with torch.no_grad():
        sums = _sum_tensors(pred, batch)
        return dict(zip(sums, torch.stack(list(sums.values())).tolist()))


def _sum_tensors(pred: dict, batch: dict) -> dict[str, torch.Tensor]:
    """:func:`error_sums` as 0-d float64 tensors on the batch's device."""
    n_atoms = batch[keys.NUM_ATOMS].double()
    de = (pred[keys.ENERGY].double() - batch[keys.ENERGY].double()) / n_atoms
    count = n_atoms.new_tensor
    sums = {"n_e": count(de.numel()), "e_abs": de.abs().sum(), "e_sq": (de * de).sum()}
    if keys.FORCES in pred and keys.FORCES in batch:
        df = pred[keys.FORCES].double() - batch[keys.FORCES].double()
        sums.update(n_f=count(df.numel()), f_abs=df.abs().sum(), f_sq=(df * df).sum(),
                    n_atoms=count(len(df)), f_l2=torch.linalg.vector_norm(df, dim=-1).sum())
    if keys.STRESS in pred and keys.STRESS in batch:
        mask = stress_mask(batch)
        p, r = pred[keys.STRESS].double(), batch[keys.STRESS].double()
        (iso_p, dev_p), (iso_r, dev_r) = stress_parts(p), stress_parts(r)
        ds = torch.where(mask[:, None, None], p - r, 0.0)
        dev = torch.where(mask[:, None, None], dev_p - dev_r, 0.0)
        n_sb = mask.double().sum()
        sums.update(n_s=9.0 * n_sb, s_abs=ds.abs().sum(), s_sq=(ds * ds).sum(), n_sb=n_sb,
                    s_iso=torch.where(mask, iso_p - iso_r, 0.0).abs().sum(),
                    s_aniso=dev.abs().sum())
    return sums


def add_sums(total: dict[str, float], new: dict[str, float]) -> dict[str, float]:
    """Pool two dicts of error sums (``total`` is updated and returned)."""
    for k, v in new.items():
        total[k] = total.get(k, 0.0) + v
    return total


def loss_from_sums(sums: dict[str, float], weights: LossWeights) -> float:
    """The loss of a whole dataset from pooled :func:`error_sums` (same terms as training)."""
    loss = weights.energy * sums["e_abs"] / sums["n_e"]
    if sums.get("n_atoms"):
        loss += weights.force * sums["f_l2"] / sums["n_atoms"]
    if sums.get("n_sb"):
        loss += weights.stress * (sums["s_iso"] / sums["n_sb"] + sums["s_aniso"] / sums["n_s"])
    return float(loss)


def _mae(short: str) -> Callable[[dict[str, float]], float | None]:
    def mae(sums: dict[str, float]) -> float | None:
        n = sums.get(f"n_{short}", 0.0)
        return sums[f"{short}_abs"] / n if n else None
    return mae


def _rmse(short: str) -> Callable[[dict[str, float]], float | None]:
    def rmse(sums: dict[str, float]) -> float | None:
        n = sums.get(f"n_{short}", 0.0)
        return (sums[f"{short}_sq"] / n) ** 0.5 if n else None
    return rmse


#: metric name -> its value from pooled sums (None when nothing was labelled); the names
#: are entries of the metric registry (``mlip_scaling.scaling.metrics``) produced by "test"
METRIC_FUNCTIONS: dict[str, Callable[[dict[str, float]], float | None]] = {
    "energy_mae": _mae("e"), "energy_rmse": _rmse("e"),
    "force_mae": _mae("f"), "force_rmse": _rmse("f"),
    "stress_mae": _mae("s"), "stress_rmse": _rmse("s"),
}


def finish_metrics(sums: dict[str, float]) -> dict[str, float | None]:
    """Every metric of :data:`METRIC_FUNCTIONS` from pooled sums (eV/atom, eV/Å, eV/Å^3)."""
    return {name: fn(sums) for name, fn in METRIC_FUNCTIONS.items()}
