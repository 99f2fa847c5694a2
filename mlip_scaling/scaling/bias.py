"""Bias and entropic expressivity of a training algorithm from replicate predictions.

For R replicates (resampled training subsets / seeds) and P probe structures, each
prediction's error ``pred − label`` is binned into a fixed grid Ω (``n_bins`` bins over
``±span``); the target set is the bins within ±τ of zero error. Per probe:

* P̄ = histogram over replicates (the averaged outcome distribution),
* Bias(τ) = tᵀP̄ − k/|Ω|,
* H(P̄) in bits (Miller–Madow corrected), E[H(P_F)] (= 0 for point predictions),
  capacity = H(P̄) − E[H(P_F)],
* trade-off bound H(P̄) ≤ log₂|Ω| − 2·Bias² and its slack,
* famine bound Pr[tᵀP_F ≥ q] ≤ (k/|Ω| + Bias)/q.
"""

from __future__ import annotations

import numpy as np

__all__ = ["entropy_bits", "bias_expressivity"]


def entropy_bits(p: np.ndarray, n_samples: int | None = None) -> float:
    """Shannon entropy (bits) of a histogram; Miller–Madow corrected when ``n_samples``."""
    p = np.asarray(p, dtype=float)
    p = p / p.sum()
    nz = p[p > 0]
    h = float(-(nz * np.log2(nz)).sum())
    if n_samples:
        h += (len(nz) - 1) / (2.0 * n_samples * np.log(2.0))
    return h


def _summaries(errors: np.ndarray, tau: float, edges: np.ndarray) -> dict[str, float]:
    n_bins = len(edges) - 1
    centres = 0.5 * (edges[1:] + edges[:-1])
    target = np.abs(centres) <= tau
    k = int(target.sum())
    r, p = errors.shape
    bias, h_bar, success = [], [], []
    for j in range(p):
        idx = np.clip(np.digitize(errors[:, j], edges) - 1, 0, n_bins - 1)
        hist = np.bincount(idx, minlength=n_bins) / r
        bias.append(float(hist[target].sum()) - k / n_bins)
        h_bar.append(entropy_bits(hist, n_samples=r))
        success.append(target[idx])
    bias_m, h_m = float(np.mean(bias)), float(np.mean(h_bar))
    bound = float(np.log2(n_bins) - 2.0 * np.mean(np.square(bias)))
    q = 0.5
    return {"bias": bias_m, "entropy_bits": h_m, "expected_entropy_bits": 0.0,
            "capacity_bits": h_m, "tradeoff_bound_bits": bound, "bound_slack_bits": bound - h_m,
            "famine_bound_q0.5": min(1.0, (k / n_bins + bias_m) / q),
            "success_rate_q0.5": float(np.mean(np.mean(success, axis=1) >= q)),
            "target_bins": k, "n_bins": n_bins}


def bias_expressivity(predictions: np.ndarray, labels: np.ndarray, tau: float,
                      span: float | None = None, n_bins: int = 64, n_boot: int = 200,
                      seed: int = 0) -> dict:
    """Bias/expressivity summaries of [R, P] predictions vs [P] labels, with 95 % intervals
    from a bootstrap over replicates."""
    predictions, labels = np.asarray(predictions, float), np.asarray(labels, float)
    if predictions.ndim != 2 or predictions.shape[1] != labels.shape[0]:
        raise ValueError(f"predictions {predictions.shape} do not match labels {labels.shape}")
    if predictions.shape[0] < 2:
        raise ValueError("need at least 2 replicates")
    errors = predictions - labels[None, :]
    span = span or float(max(np.abs(errors).max(), 2 * tau) * 1.01)
    edges = np.linspace(-span, span, n_bins + 1)
    result = _summaries(errors, tau, edges)
    rng = np.random.default_rng(seed)
    draws = [_summaries(errors[rng.integers(len(errors), size=len(errors))], tau, edges)
             for _ in range(n_boot)]
    result["ci"] = {k: [float(np.percentile([d[k] for d in draws], 2.5)),
                        float(np.percentile([d[k] for d in draws], 97.5))]
                    for k in ("bias", "entropy_bits", "bound_slack_bits")}
    result.update(tau=tau, span=span, replicates=int(len(errors)), probes=int(labels.size))
    return result
