"""Bias and entropic expressivity of a training algorithm from replicate predictions.

Outcome space Ω: the prediction error ``pred − label`` of one probe, binned into a FIXED grid
of ``n_bins`` bins over ``[−span, span]`` (label units, e.g. eV/atom; ``span`` defaults to
``SPAN_TAUS × τ``, never to a data-dependent range, so one outlier cannot move the grid);
errors beyond ±span fall into the end bins (reported as ``clipped_fraction``). The target
set T is the k bins whose centres lie within ±τ of zero error. An information resource F
(a training subset + seed: one replicate) induces an outcome distribution P_F over Ω:

* point predictions ``[R, P]``: P_F is a point mass (H(P_F) = 0);
* stochastic predictions ``[R, S, P]`` (S draws per replicate, e.g. MC dropout or several
  evaluation seeds): P_F is the histogram of the S draws.

Per probe: P̄ = mean of the P_F over replicates; Bias(τ) = tᵀP̄ − k/|Ω|; entropic
expressivity H(P̄) (bits); expected expressivity E[H(P_F)]; capacity = H(P̄) − E[H(P_F)];
trade-off bound H(P̄) ≤ log₂|Ω| − 2·Bias² and its slack; famine bound
Pr[tᵀP_F ≥ q] ≤ (k/|Ω| + Bias)/q. Summaries are means over probes.

Few replicates bias the plug-in entropy of P̄ down (R = 5 samples cannot show more than
log₂5 bits). ``entropy_bits`` is the jackknife (leave-one-replicate-out) bias-corrected
estimate; ``entropy_mm_bits`` the Miller–Madow one and ``entropy_plugin_bits`` the plug-in
(the bounds are checked with the plug-in values, for which they hold exactly); E[H(P_F)] is
Miller–Madow corrected with n = S. 95 % intervals: estimate ± t(R−1)·(jackknife standard
error over replicates), so each interval contains its estimate. Compared models must have
the same R (:func:`compare_bias_expressivity` refuses otherwise): the correction leaves an
R-dependent residual bias.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["read_predictions", "load_predictions", "replicate_predictions", "entropy_bits",
           "bias_of", "tradeoff_bound", "famine_bound", "outcome_histograms",
           "bias_expressivity", "compare_bias_expressivity", "SPAN_TAUS"]

SPAN_TAUS = 16.0  # default grid half-width in units of tau
_CI_KEYS = ("bias", "entropy_bits", "expected_entropy_bits", "capacity_bits",
            "bound_slack_bits")


def entropy_bits(p: np.ndarray, n_samples: int | None = None) -> float | np.ndarray:
    """Shannon entropy (bits) of histogram(s) ``p`` [..., |Ω|]; Miller–Madow corrected
    ((m − 1)/(2 n ln 2), m = occupied bins) when ``n_samples`` n is given."""
    p = np.asarray(p, dtype=float)
    p = p / p.sum(axis=-1, keepdims=True)
    logs = np.log2(np.where(p > 0, p, 1.0))
    h = -(p * logs).sum(axis=-1)
    if n_samples:
        h = h + ((p > 0).sum(axis=-1) - 1) / (2.0 * n_samples * np.log(2.0))
    return float(h) if h.ndim == 0 else h


def bias_of(pbar: np.ndarray, target: np.ndarray) -> float | np.ndarray:
    """Bias(D, t) = tᵀP̄ − k/|Ω| of histogram(s) ``pbar`` [..., |Ω|] for a boolean target."""
    target = np.asarray(target, dtype=bool)
    return np.asarray(pbar)[..., target].sum(axis=-1) - target.sum() / target.size


def tradeoff_bound(n_outcomes: int, bias: float | np.ndarray) -> float | np.ndarray:
    """Upper bound on H(P̄) in bits: log₂|Ω| − 2·Bias²."""
    return np.log2(n_outcomes) - 2.0 * np.square(bias)


def famine_bound(k: int, n_outcomes: int, bias: float | np.ndarray, q_min: float):
    """Upper bound on Pr_F[tᵀP_F ≥ q_min]: (k/|Ω| + Bias)/q_min, capped at 1."""
    return np.minimum(1.0, (k / n_outcomes + np.asarray(bias)) / q_min)


def outcome_histograms(errors: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per-replicate outcome distributions P_F [R, P, |Ω|] of errors [R, S, P]
    (S draws per replicate) on the grid ``edges`` [|Ω|+1]; out-of-grid values are
    clipped into the end bins."""
    n_bins = len(edges) - 1
    idx = np.clip(np.digitize(errors, edges) - 1, 0, n_bins - 1)  # [R, S, P]
    onehot = np.eye(n_bins)[idx]  # [R, S, P, |Ω|]
    return onehot.mean(axis=1)


def _summaries(p_f: np.ndarray, target: np.ndarray, n_draws: int, q_min: float) -> dict:
    """Probe-averaged summaries of replicate distributions P_F [R, P, |Ω|]."""
    n_rep, _, n_bins = p_f.shape
    k = int(target.sum())
    pbar = p_f.mean(axis=0)  # [P, |Ω|]
    bias = bias_of(pbar, target)
    h_plug = entropy_bits(pbar)
    h_mm = entropy_bits(pbar, n_samples=n_rep * n_draws)
    hf_plug = entropy_bits(p_f).mean(axis=0) if n_draws > 1 else np.zeros_like(h_plug)
    hf_mm = entropy_bits(p_f, n_samples=n_draws).mean(axis=0) if n_draws > 1 else hf_plug
    bound = tradeoff_bound(n_bins, bias)
    success = (p_f[..., target].sum(axis=-1) >= q_min).mean(axis=0)  # [P]
    return {
        "bias": float(bias.mean()), "bias_abs": float(np.abs(bias).mean()),
        "entropy_bits": float(h_plug.mean()), "entropy_mm_bits": float(h_mm.mean()),
        "entropy_plugin_bits": float(h_plug.mean()),
        "expected_entropy_bits": float(hf_mm.mean()),
        "expected_entropy_plugin_bits": float(hf_plug.mean()),
        "capacity_bits": float((h_plug - hf_mm).mean()),
        "capacity_plugin_bits": float((h_plug - hf_plug).mean()),
        "tradeoff_bound_bits": float(bound.mean()),
        "bound_slack_bits": float((bound - h_plug).mean()),
        "famine_bound": float(famine_bound(k, n_bins, bias, q_min).mean()),
        "success_rate": float(success.mean()),
        "target_bins": k, "n_bins": int(n_bins), "q_min": q_min,
    }


def _jackknife(p_f: np.ndarray, target: np.ndarray, n_draws: int, q_min: float) -> dict:
    """Summaries with jackknife bias correction of the entropies and 95 % intervals."""
    full = _summaries(p_f, target, n_draws, q_min)
    n_rep = len(p_f)
    loo = [_summaries(np.delete(p_f, i, axis=0), target, n_draws, q_min) for i in range(n_rep)]
    from scipy.stats import t as student_t

    t_crit = float(student_t.ppf(0.975, n_rep - 1))
    ci = {}
    for key in _CI_KEYS:
        values = np.array([d[key] for d in loo])
        if key in ("entropy_bits", "capacity_bits"):  # plug-in H(P̄) -> jackknife estimate
            full[key] = float(n_rep * full[key] - (n_rep - 1) * values.mean())
        se = float(np.sqrt((n_rep - 1) / n_rep * np.sum((values - values.mean()) ** 2)))
        ci[key] = [full[key] - t_crit * se, full[key] + t_crit * se]
    full["ci"] = ci
    return full


def _grid(tau: float, span: float | None, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(edges [|Ω|+1], target [|Ω|] bool) of the fixed outcome grid."""
    span = float(span) if span else SPAN_TAUS * tau
    edges = np.linspace(-span, span, n_bins + 1)
    target = np.abs(0.5 * (edges[1:] + edges[:-1])) <= tau * (1 + 1e-9)
    if not target.any():
        raise ValueError(f"no bin centre within ±tau={tau:g} (bin width {2 * span / n_bins:.3g}"
                         "); use more bins or a larger tau")
    return edges, target


def bias_expressivity(predictions: np.ndarray, labels: np.ndarray, tau: float,
                      span: float | None = None, n_bins: int = 64,
                      q_min: float = 0.5) -> dict:
    """Bias/expressivity of predictions [R, P] or [R, S, P] against labels [P].

    ``tau`` and ``span`` are in label units; ``span`` defaults to ``SPAN_TAUS × tau`` (a
    fixed grid: the data never move it). Raises ValueError on shapes that do not match,
    fewer than 3 replicates, non-finite values or an empty target.
    """
    predictions, labels = np.asarray(predictions, float), np.asarray(labels, float)
    if predictions.ndim == 2:
        predictions = predictions[:, None, :]
    if predictions.ndim != 3 or labels.ndim != 1 or predictions.shape[2] != labels.shape[0]:
        raise ValueError(f"predictions {predictions.shape} do not match labels {labels.shape}"
                         " (need [R, P] or [R, S, P] and [P])")
    if predictions.shape[0] < 3 or labels.size == 0:
        raise ValueError(f"need >= 3 replicates and >= 1 probe, got {predictions.shape}")
    if not (np.isfinite(predictions).all() and np.isfinite(labels).all()):
        raise ValueError("predictions or labels contain NaN/inf")
    if not tau > 0 or n_bins < 2 or not 0 < q_min <= 1 or (span is not None and span <= 0):
        raise ValueError(f"need tau > 0, span > 0, n_bins >= 2, 0 < q_min <= 1 (got {tau}, "
                         f"{span}, {n_bins}, {q_min})")
    errors = predictions - labels[None, None, :]
    edges, target = _grid(tau, span, n_bins)
    p_f = outcome_histograms(errors, edges)
    result = _jackknife(p_f, target, errors.shape[1], q_min)
    result.update(tau=float(tau), span=float(edges[-1]), replicates=int(len(p_f)),
                  draws=int(errors.shape[1]), probes=int(labels.size),
                  clipped_fraction=float((np.abs(errors) > edges[-1]).mean()))
    return result


def compare_bias_expressivity(sets: Sequence[tuple[np.ndarray, np.ndarray]], tau: float,
                              span: float | None = None, n_bins: int = 64,
                              q_min: float = 0.5) -> list[dict]:
    """:func:`bias_expressivity` of several models (``(predictions, labels)`` each) on one
    grid; raises ValueError unless every model has the same number of replicates R."""
    counts = [np.asarray(p).shape[0] for p, _ in sets]
    if len(set(counts)) > 1:
        raise ValueError(f"compared models need the same replicate count R (got {counts}); "
                         "the entropy estimate's residual bias depends on R")
    return [bias_expressivity(p, lab, tau, span, n_bins, q_min) for p, lab in sets]


def replicate_predictions(directory, data=None, n_probes: int = 64, quantity: str = "energy"
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Predictions [R, P] and labels [P] of every model file under ``directory`` (the
    replicates) on probes from the test split of the first model file (path order).

    ``quantity``: ``energy`` (eV/atom, one value per probe structure) or ``forces`` (eV/Å,
    every Cartesian component of the probe structures). ``data`` overrides the dataset the
    models name. With the same split settings the probes are held out from every replicate.
    """
    from mlip_scaling.calculators.ase import ScalingCalculator
    from mlip_scaling.checkpoint import CheckpointError, is_run_state, load_checkpoint
    from mlip_scaling.data.dataset import atoms_at, open_for_model, test_set
    from mlip_scaling.errors import ConfigError, DataError

    if quantity not in ("energy", "forces"):
        raise ConfigError(f"unknown quantity {quantity!r} (energy or forces)")
    models = []
    for path in sorted(Path(directory).rglob("*.pt")):
        try:
            models.append((path, {"train": load_checkpoint(path).get("train", {})}))
        except CheckpointError as exc:  # run states are not replicates; bad files are named
            if not is_run_state(path):
                print(f"skipped {exc}", file=sys.stderr)
    if len(models) < 2:
        raise DataError(f"{directory}: need >= 2 replicate model files, found {len(models)}")
    hashes = {ckpt["train"].get("dataset_hash") for _, ckpt in models}
    if len(hashes) > 1:
        raise ConfigError(f"{directory}: replicates were trained on different datasets")
    first_path, first = models[0]
    data = data or first["train"].get("dataset")
    if not data:
        raise ConfigError(f"{first_path}: the model file names no dataset; pass --data")
    source = open_for_model(data, first, first_path)
    atoms = [atoms_at(source, i) for i in test_set(first, source, n_probes, str(data))]

    def values(results: list[dict]) -> np.ndarray:
        if quantity == "energy":
            return np.array([float(r["energy"]) / len(r["forces"]) for r in results])
        return np.concatenate([np.asarray(r["forces"]).ravel() for r in results])

    try:
        labels = values([{"energy": a.get_potential_energy(), "forces": a.get_forces()}
                         for a in atoms])
    except RuntimeError as exc:
        raise DataError(f"{data}: probe structures carry no labels ({exc})") from None
    preds = [values(ScalingCalculator(str(path), device="cpu", dtype="float64").predict(atoms))
             for path, _ in models]
    return np.stack(preds), labels


def read_predictions(path: Path, data: str | None = None, n_probes: int = 64,
                     quantity: str = "energy") -> tuple[np.ndarray, np.ndarray]:
    """``(predictions, labels)`` of a ``.npz`` file (:func:`load_predictions`) or of a folder
    of replicate model files (:func:`replicate_predictions` with the other arguments)."""
    if path.is_dir():
        return replicate_predictions(path, data=data, n_probes=n_probes, quantity=quantity)
    if path.is_file():
        return load_predictions(path)
    from mlip_scaling.errors import DataError

    raise DataError(f"{path}: no such file or directory")


def load_predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(predictions [R,P] or [R,S,P], labels [P])`` of a ``.npz`` file (DataError naming
    it)."""
    from mlip_scaling.errors import DataError

    try:
        with np.load(path, allow_pickle=False) as fh:
            return np.asarray(fh["predictions"]), np.asarray(fh["labels"])
    except (KeyError, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: needs arrays 'predictions' [R,P] or [R,S,P] and 'labels' [P]"
                        f" ({type(exc).__name__}: {exc})") from None
