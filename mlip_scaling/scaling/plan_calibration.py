"""Planted-truth checks of the allocation and the planner (Monte Carlo).

* ``allocation_coverage``: runs on a K×K grid of N = 1e4..1e7 parameters and D = 1e2..1e5
  structures, loss L = 0.02 + 50/N^0.35 + 8/D^0.3 with log-normal noise, training FLOPs
  C = 3e3·N^0.9·D (5 % scatter, a per-structure cost that grows sub-linearly with N, as
  measured rather than 6ND). Planted a = β/(α + γβ), b = α/(α + γβ); the fraction of
  repetitions whose 95 % intervals hold them. Optionally several seeds per cell whose
  errors share a component (correlation ``rho``).
* ``planner_check``: data simulated from the planner's own noise model at a grid, each
  downstream value the mean of ``count`` skewed per-structure errors (Gamma, CV
  ``cv``), fitted with the package's power law on per-size means; the fraction of
  repetitions that resolve the planted exponent (trend significant at 5 % and 95 %
  half-width <= the target).
"""

from __future__ import annotations

import time

import numpy as np

from mlip_scaling.scaling.allocation import allocate
from mlip_scaling.scaling.fit import fit_law

__all__ = ["ALLOCATION_TRUTH", "allocation_coverage", "simulate_grid", "planner_check"]

#: planted joint law (E, A, α, B, β) and cost (κ, γ) of ``allocation_coverage``
ALLOCATION_TRUTH = {"E": 0.02, "A": 50.0, "a": 0.35, "B": 8.0, "b": 0.3, "kappa": 3e3,
                    "gamma": 0.9}


def allocation_coverage(sizes: int, reps: int, noise: float = 0.02, n_boot: int = 40,
                        seed: int = 0, seeds: int = 1, rho: float = 0.0) -> dict:
    """Coverage of the planted allocation exponents (see the module docstring); ``seeds``
    runs per cell whose log errors correlate by ``rho`` (a component shared by the cell).

    Returns {"reps", "fitted" (fraction with status ok), "cover_a", "cover_b", "bias_a",
    "bias_b", "seconds"}."""
    t = ALLOCATION_TRUTH
    true_a = t["b"] / (t["a"] + t["gamma"] * t["b"])
    true_b = t["a"] / (t["a"] + t["gamma"] * t["b"])
    n, d = (np.repeat(v.ravel(), seeds) for v in np.meshgrid(
        np.logspace(4, 7, sizes), np.logspace(2, 5, sizes), indexing="ij"))
    rng = np.random.default_rng(seed)
    start, hits = time.perf_counter(), []
    for rep in range(reps):
        shared = np.repeat(rng.normal(0, noise * np.sqrt(rho), sizes * sizes), seeds) if (
            rho > 0) else 0.0
        y = (t["E"] + t["A"] / n ** t["a"] + t["B"] / d ** t["b"]) * np.exp(
            shared + rng.normal(0, noise * np.sqrt(1 - rho), n.size))
        c = t["kappa"] * n ** t["gamma"] * d * np.exp(rng.normal(0, 0.05, n.size))
        res = allocate(n, d, y, c, budgets=[1e12], n_boot=n_boot, seed=seed * 100_003 + rep)
        if res["status"] == "ok":
            hits.append((res["a_ci"][0] <= true_a <= res["a_ci"][1],
                         res["b_ci"][0] <= true_b <= res["b_ci"][1],
                         res["a"] - true_a, res["b"] - true_b))
    h = np.array(hits, float).reshape(-1, 4)
    return {"reps": reps, "fitted": len(hits) / reps,
            **{k: float(h[:, i].mean()) if len(h) else float("nan")
               for i, k in enumerate(("cover_a", "cover_b", "bias_a", "bias_b"))},
            "seconds": time.perf_counter() - start}


def simulate_grid(rng: np.random.Generator, sizes, seeds: int, count: int, beta: float,
                  sigma_run: float, cv: float, sigma_shared: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One simulated study: (sizes repeated per seed [K·s], metric [K·s]).

    Metric of a run = mean of ``count`` per-structure errors ~ m·Gamma(1/cv², cv²)
    (relative SE cv/√count), m = 0.1·(x/x₀)^−β·exp(shared + run scatter)."""
    x = np.asarray(sizes, float)
    shared = rng.normal(0, sigma_shared, len(x)) if sigma_shared > 0 else np.zeros(len(x))
    xs = np.repeat(x, seeds)
    m = 0.1 * (xs / x[0]) ** -beta * np.exp(np.repeat(shared, seeds)
                                           + rng.normal(0, sigma_run, len(xs)))
    shape = 1.0 / cv**2
    per = rng.gamma(shape, 1.0 / shape, size=(len(xs), count))
    return xs, m * per.mean(1)


def planner_check(sizes, seeds: int, count: int, beta: float, half_width: float,
                  sigma_run: float, cv: float, reps: int, seed: int = 0) -> float:
    """Fraction of ``reps`` simulated studies whose power law on per-size means
    (``fit_law``) is reported (trend p < 0.05) with a 95 % half-width <= ``half_width``."""
    rng = np.random.default_rng(seed)
    x = np.asarray(sizes, float)
    hits = 0
    for _ in range(reps):
        xs, y = simulate_grid(rng, x, seeds, count, beta, sigma_run, cv)
        means = np.exp(np.log(y).reshape(len(x), seeds).mean(1))
        fit = fit_law("power", x, means)
        hits += bool(fit.ok and (fit.ci["beta"][1] - fit.ci["beta"][0]) / 2 <= half_width)
    return hits / reps


#: planner checks: (name, σ_run, per-structure CV, count kind, reference count, β, h)
PLANNER_SETTINGS = (
    ("relaxations, beta 0.1 +- 0.05", 0.03, 1.0, "relaxations", 20, 0.1, 0.05),
    ("large run scatter, beta 0.2 +- 0.07", 0.12, 0.5, "relaxations", 20, 0.2, 0.07),
    ("md steps, beta 0.3 +- 0.1", 0.05, 3.0, "md_steps", 1000, 0.3, 0.1),
)


def planner_check_table(reps: int, seed: int = 0, span=(1e4, 1e6)) -> list[dict]:
    """Per setting of :data:`PLANNER_SETTINGS`: the grid ``plan_grid`` calls sufficient,
    its predicted and simulated resolve rates, and the same for the next cheaper grid
    (one size fewer)."""
    from mlip_scaling.scaling.planner import Grid, Noise, log_sizes, plan_grid

    rows = []
    for i, (name, sig_run, cv, kind, ref, beta, hw) in enumerate(PLANNER_SETTINGS):
        noise = Noise("metric", sigma_run=sig_run, sigma_eval=cv / np.sqrt(ref),
                      count_ref=ref, count_kind=kind)
        plan = plan_grid(noise, beta, hw, *span)
        grid = plan["grid"]
        count = grid.count(kind, ref)
        fewer = Grid(log_sizes(*span, len(grid.sizes) - 1), grid.seeds, **{kind: count})
        rates = [planner_check(g.sizes, g.seeds, count, beta, hw, sig_run, cv, reps,
                               seed=seed * 7919 + i) for g in (grid, fewer)]
        from mlip_scaling.scaling.planner import resolve_probability, size_variances

        rows.append({"setting": name, "status": plan["status"], "sizes": len(grid.sizes),
                     "seeds": grid.seeds, kind: count, "predicted": plan["p_resolve"],
                     "simulated": rates[0], "fewer_sizes_predicted": resolve_probability(
                         beta, hw, fewer.sizes, size_variances(noise, fewer)),
                     "fewer_sizes_simulated": rates[1], "reps": reps})
    return rows
