"""The metrics of a model: their registry (names, units, definitions) and the test-split ones.

:data:`REGISTRY` is the one place where a metric's label, unit, definition and direction
live; the report, its plots, the fit CLI and ``examples/demo_summary.py`` read it, so a
metric added here is fitted, tabulated and labelled everywhere.

:func:`test_metrics` computes the test-split errors with the sums and loss of training
(``mlip_scaling.training.loss``): L = 2.5·MAE(E/atom) + 20·L2MAE(F) + 5·MAE(σ_iso) +
5·MAE(σ_aniso), with σ_iso the mean of the diagonal and σ_aniso the deviatoric part; stress
terms only over labelled structures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlip_scaling.models.potential import Potential

__all__ = ["Metric", "REGISTRY", "FITTED", "metric", "axis_label", "test_metrics"]


@dataclass(frozen=True)
class Metric:
    """One metric: ``label`` and ``unit`` for tables and axes, ``definition`` in words.

    ``lower_is_better``: the direction of improvement; ``error``: an error expected to fall
    with scale (a decreasing power law is fitted and expected); ``role``: ``"fit"`` (scaling
    laws fitted), ``"info"`` (tabulated per model, not fitted) or ``"oracle"`` (a property
    of the reference run, not of the model: neither).
    """

    name: str
    label: str
    unit: str
    definition: str
    lower_is_better: bool = True
    error: bool = True
    role: str = "fit"

    def heading(self) -> str:
        """``label (unit)``, or the label alone for dimensionless metrics."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


_LOSS = ("training loss on the test split: 2.5·MAE(E/atom) + 20·L2MAE(F) + 5·MAE(σ_iso) "
         "+ 5·MAE(σ_aniso)")
_ENTRIES = (
    Metric("test_loss", "test loss", "", _LOSS),
    Metric("energy_mae", "energy MAE", "eV/atom", "mean |E − E_ref| / N over test structures"),
    Metric("energy_rmse", "energy RMSE", "eV/atom", "root mean square of (E − E_ref) / N"),
    Metric("force_mae", "force MAE", "eV/Å", "mean |F − F_ref| over force components"),
    Metric("force_rmse", "force RMSE", "eV/Å", "root mean square of F − F_ref components"),
    Metric("stress_mae", "stress MAE", "eV/Å³", "mean |σ − σ_ref| over stress components"),
    Metric("stress_rmse", "stress RMSE", "eV/Å³", "root mean square of σ − σ_ref components"),
    Metric("relax_energy_error", "relaxed-energy error", "eV/atom",
           "mean |E/N| difference between the model's and the oracle's relaxed structures, "
           "a failed model relaxation counted as 1 eV/atom"),
    Metric("relax_energy_error_se", "relaxed-energy error SE", "eV/atom",
           "standard error of the relaxed-energy error over structures", role="info"),
    Metric("relax_energy_error_converged", "relaxed-energy error (converged)", "eV/atom",
           "relaxed-energy error over the converged model relaxations only", role="info"),
    Metric("relax_energy_error_converged_se", "converged relaxed-energy error SE", "eV/atom",
           "standard error of the converged-only relaxed-energy error", role="info"),
    Metric("relax_rmsd", "relaxation RMSD", "normalised",
           "RMS minimum-image displacement between the two relaxed copies (same start, same "
           "atom order, mean shift removed) / (V/N)^(1/3); a failed relaxation counts 1"),
    Metric("relax_rmsd_se", "relaxation RMSD SE", "normalised",
           "standard error of the relaxation RMSD over structures", role="info"),
    Metric("relax_structures", "relaxed structures", "structures",
           "structures relaxed by model and oracle", error=False, role="info"),
    Metric("relax_failure_rate", "relaxation failure rate", "fraction",
           "model relaxations not converged in 500 steps or exploded"),
    Metric("relax_failure_rate_se", "failure-rate SE", "fraction",
           "standard error of the relaxation failure rate", role="info"),
    Metric("relax_steps", "relaxation steps", "steps", "mean FIRE steps of the model's "
           "relaxations", error=False),
    Metric("relax_steps_se", "relaxation steps SE", "steps",
           "standard error of the mean FIRE steps", error=False, role="info"),
    Metric("relax_adwt", "relaxation ADwT", "fraction", "average distance within threshold "
           "(0.01–0.5 Å) of the relaxed positions (fixed cell)", lower_is_better=False,
           error=False),
    Metric("relax_adwt_se", "relaxation ADwT SE", "fraction",
           "standard error of the fixed-cell ADwT", error=False, role="info"),
    Metric("md_drift", "NVE energy drift", "meV/atom/ps",
           "|slope| of E_total/N against time after the first 20 % of the steps"),
    Metric("md_drift_se", "drift standard error", "meV/atom/ps",
           "standard error of the NVE energy-drift slope", role="info"),
    Metric("md_drift_resolved", "drift resolved", "0/1",
           "1 when the drift exceeds twice its standard error (else below the noise floor)",
           error=False, role="info"),
    Metric("md_unstable", "MD unstable", "0/1", "1 when the model's NVE run blew up",
           error=False, role="info"),
    Metric("md_stability", "MD stability", "fraction",
           "fraction of the NVE steps completed before a blow-up", lower_is_better=False,
           error=False),
    Metric("rdf_error", "RDF error", "relative",
           "∫|g_model − g_oracle| dr / ∫|g_oracle − 1| dr over the NVE trajectories"),
    Metric("rdf_error_se", "RDF error SE", "relative",
           "block standard error of the RDF error (4 blocks of frames)", role="info"),
    Metric("relax_oracle_failures", "oracle relaxation failures", "structures",
           "oracle relaxations that did not converge (left out)", role="oracle"),
    Metric("md_oracle_drift", "oracle NVE drift", "meV/atom/ps",
           "energy drift of the oracle's own NVE run (the integrator's noise floor)",
           role="oracle"),
    Metric("md_oracle_stability", "oracle MD stability", "fraction",
           "fraction of the oracle's NVE steps completed", lower_is_better=False,
           error=False, role="oracle"),
)
#: metric name -> :class:`Metric`, in table order
REGISTRY: dict[str, Metric] = {m.name: m for m in _ENTRIES}
#: names of the metrics whose scaling laws are fitted, in table order
FITTED: tuple[str, ...] = tuple(m.name for m in _ENTRIES if m.role == "fit")
_AXES = {"data": "training structures N_data", "params": "parameters N_params",
         "compute": "training compute (FLOP)"}


def metric(name: str) -> Metric:
    """The registered metric ``name``; an unknown name gets a plain entry (raw key, no unit)
    so new record fields still show."""
    return REGISTRY.get(name) or Metric(name, name, "", "not in the metric registry",
                                        role="info")


def axis_label(axis: str) -> str:
    """Axis label of a scaling axis (``data``, ``params``, ``compute``) with its unit."""
    return _AXES[axis]


def test_metrics(potential: Potential, source: Any, indices: Sequence[int],
                 batch_size: int = 16) -> dict[str, float | None]:
    """energy_mae/rmse (eV/atom), force_mae/rmse (eV/Å), stress_mae/rmse (eV/Å^3), test_loss.

    ``source[i]`` are labelled structures (store items or ASE Atoms); the potential is run
    in its own dtype on the CPU, in batches of ``batch_size`` structures.
    """
    from mlip_scaling.accuracy import (
        LossWeights,
        add_sums,
        error_sums,
        finish_metrics,
        loss_from_sums,
    )
    from mlip_scaling.data.atomic_data import collate
    from mlip_scaling.data.dataset import prepare

    dtype = potential.dtype
    items = prepare(source, indices, potential.cutoff, {}, "test split", dtype)
    sums: dict[str, float] = {}
    for k in range(0, len(items), batch_size):
        batch = collate(items[k:k + batch_size])
        sums = add_sums(sums, error_sums(potential(batch), batch))
    metrics: dict[str, float | None] = dict(finish_metrics(sums))
    metrics["test_loss"] = loss_from_sums(sums, LossWeights())
    return metrics


test_metrics.__test__ = False  # not a pytest test despite the name
