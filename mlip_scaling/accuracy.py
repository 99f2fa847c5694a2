"""Errors of predictions against labels: pooled sums, MAE/RMSE and the loss from sums.

Shared by training (validation) and evaluation (test split), so both measure the same way:

* energy per structure in eV/atom, force per Cartesian component in eV/Å, stress per
  tensor component in eV/Å^3 over the structures that carry a stress label
  (:data:`mlip_scaling.keys.HAS_STRESS`);
* the loss ``w_E·MAE(E/atom) + w_F·L2MAE(F) + w_S·(MAE(σ_iso) + MAE(σ_aniso))`` with
  ``σ_iso`` the mean of the diagonal and ``σ_aniso`` the deviatoric part.

Sums of several batches (or DDP ranks) add; :func:`finish_metrics` turns them into metrics.
:func:`standard_errors` gives each metric's standard error from the sums of each structure
(:func:`structure_errors`), the test structures being the independent units.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mlip_scaling import keys

__all__ = ["LossWeights", "SUM_NAMES", "METRIC_FUNCTIONS", "stress_parts", "stress_mask",
           "error_sums", "structure_errors", "add_sums", "finish_metrics", "loss_from_sums",
           "standard_errors"]

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
        mask, ds, iso, dev = _stress_differences(pred, batch)
        n_sb = mask.double().sum()
        sums.update(n_s=9.0 * n_sb, s_abs=ds.abs().sum(), s_sq=(ds * ds).sum(), n_sb=n_sb,
                    s_iso=iso.abs().sum(),
                    s_aniso=dev.abs().sum())
    return sums


def _stress_differences(pred: dict, batch: dict) -> tuple[torch.Tensor, ...]:
    """Stress-labelled mask [B] and the prediction's errors, zero where unlabelled: full
    tensor [B, 3, 3] (eV/Å^3), isotropic part [B] and deviatoric part [B, 3, 3]."""
    mask = stress_mask(batch)
    p, r = pred[keys.STRESS].double(), batch[keys.STRESS].double()
    (iso_p, dev_p), (iso_r, dev_r) = stress_parts(p), stress_parts(r)
    return (mask, torch.where(mask[:, None, None], p - r, 0.0),
            torch.where(mask, iso_p - iso_r, 0.0),
            torch.where(mask[:, None, None], dev_p - dev_r, 0.0))


def structure_errors(pred: dict, batch: dict) -> dict[str, np.ndarray]:
    """:func:`error_sums` of each structure of the batch: every key of :data:`SUM_NAMES`, a
    float64 array [B] (zeros for what is not labelled; one host transfer), so batches
    concatenate and the column sums are the batch's sums."""
    with torch.no_grad():
        rows = _structure_tensors(pred, batch)
        values = dict(zip(rows, torch.stack(list(rows.values())).cpu().numpy()))
    zeros = np.zeros_like(values["n_e"])
    return {name: values.get(name, zeros) for name in SUM_NAMES}


def _structure_tensors(pred: dict, batch: dict) -> dict[str, torch.Tensor]:
    """The error sums of each structure, float64 tensors [B] on the batch's device: the
    terms of :func:`_sum_tensors` split by structure (kept apart so training steps do not
    pay for the split; a test checks that they add up)."""
    n_atoms = batch[keys.NUM_ATOMS].double()
    de = (pred[keys.ENERGY].double() - batch[keys.ENERGY].double()) / n_atoms
    rows = {"n_e": torch.ones_like(de), "e_abs": de.abs(), "e_sq": de * de}
    if keys.FORCES in pred and keys.FORCES in batch:
        df = pred[keys.FORCES].double() - batch[keys.FORCES].double()
        owner = batch.get(keys.BATCH)
        if owner is None:  # a hand-made batch: atoms in structure order
            counts = batch[keys.NUM_ATOMS]
            owner = torch.repeat_interleave(torch.arange(len(counts), device=df.device),
                                            counts.to(df.device))

        def per_structure(v: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(de).index_add_(0, owner, v)

        rows.update(n_f=per_structure(torch.full_like(df[:, 0], 3.0)),
                    f_abs=per_structure(df.abs().sum(dim=1)),
                    f_sq=per_structure((df * df).sum(dim=1)),
                    n_atoms=per_structure(torch.ones_like(df[:, 0])),
                    f_l2=per_structure(torch.linalg.vector_norm(df, dim=-1)))
    if keys.STRESS in pred and keys.STRESS in batch:
        mask, ds, iso, dev = _stress_differences(pred, batch)
        labelled = mask.double()
        rows.update(n_s=9.0 * labelled, s_abs=ds.abs().sum(dim=(1, 2)),
                    s_sq=(ds * ds).sum(dim=(1, 2)), n_sb=labelled,
                    s_iso=iso.abs(),
                    s_aniso=dev.abs().sum(dim=(1, 2)))
    return rows


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


def _ratio_se(rows: dict[str, np.ndarray], terms: list[tuple[float, str, str]]) -> float | None:
    """Standard error of ``Σ_k w_k·Σ_i a_ki / Σ_i c_ki`` over independent structures i, for
    ``terms`` (w_k, a_k, c_k) naming per-structure arrays of ``rows`` (delta method:
    ``√(m/(m−1)·Σ_i d_i²)``, ``d_i = Σ_k w_k (a_ki − R_k c_ki) / C_k``, m the structures
    with a count in some term). None with fewer than 2 such structures."""
    d = used = None
    for w, a, c in terms:
        if c not in rows or not rows[c].sum() > 0:
            continue
        total = rows[c].sum()
        term = w * (rows[a] - rows[a].sum() / total * rows[c]) / total
        d = term if d is None else d + term
        used = rows[c] > 0 if used is None else used | (rows[c] > 0)
    m = 0 if used is None else int(used.sum())
    return float(np.sqrt(m / (m - 1) * (d[used] ** 2).sum())) if m > 1 else None


_SHORT = {"energy": "e", "force": "f", "stress": "s"}


def standard_errors(rows: dict[str, np.ndarray], weights: LossWeights
                    ) -> dict[str, float | None]:
    """``<metric>_se`` of every metric of :data:`METRIC_FUNCTIONS` and ``test_loss_se``,
    from the per-structure sums ``rows`` (:func:`structure_errors` of every structure).

    Each structure is one independent unit (its atoms and components are not): an MAE is the
    ratio Σ|errors| / Σcounts over structures and gets the ratio's delta-method standard
    error, which for equal counts is std(per-structure MAE, ddof=1) / √structures; an RMSE
    gets SE(MSE) / (2·RMSE); the loss, a weighted sum of such ratios, gets the delta-method
    SE of the sum over the same structures. None where undefined (< 2 labelled structures).
    """
    out: dict[str, float | None] = {}
    for name, short in _SHORT.items():
        out[f"{name}_mae_se"] = _ratio_se(rows, [(1.0, f"{short}_abs", f"n_{short}")])
        mse_se = _ratio_se(rows, [(1.0, f"{short}_sq", f"n_{short}")])
        rmse = METRIC_FUNCTIONS[f"{name}_rmse"]({k: float(v.sum()) for k, v in rows.items()})
        out[f"{name}_rmse_se"] = mse_se / (2 * rmse) if mse_se is not None and rmse else None
    out["test_loss_se"] = _ratio_se(rows, [
        (weights.energy, "e_abs", "n_e"), (weights.force, "f_l2", "n_atoms"),
        (weights.stress, "s_iso", "n_sb"), (weights.stress, "s_aniso", "n_s")])
    return out
