"""The metrics of a model: their registry (names, units, definitions) and the test-split ones.

:data:`REGISTRY` is the one place where a metric's label, unit, definition, direction, the
evaluation that produces it and whether a scaling law is fitted live; evaluation, the fits,
the report, its plots and ``examples/demo_summary.py`` read it. Adding a metric is one entry
here plus its function (``mlip_scaling.accuracy.METRIC_FUNCTIONS`` for a test-split error,
the return dict of ``scaling.downstream.relax.summarise`` or ``md.md_errors`` otherwise).

:func:`test_metrics` computes the test-split errors with the sums and loss of training
(``mlip_scaling.accuracy``): L = 2.5·MAE(E/atom) + 20·L2MAE(F) + 5·MAE(σ_iso) +
5·MAE(σ_aniso), with σ_iso the mean of the diagonal and σ_aniso the deviatoric part; stress
terms only over labelled structures. Each comes with its standard error ``<name>_se``, the
test structures being the independent units (``mlip_scaling.accuracy.standard_errors``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlip_scaling.models.potential import Potential

__all__ = ["Metric", "REGISTRY", "FITTED", "SELECTION", "EVALUATIONS", "metric", "produced_by",
           "select", "axis_label", "test_metrics"]

#: the evaluations that produce metrics: the test split, free-cell and fixed-cell
#: relaxations against the oracle, NVE molecular dynamics (phonons and elastic constants
#: are added below)
EVALUATIONS = ("test", "relax", "relax_fixed", "md")


@dataclass(frozen=True)
class Metric:
    """One metric: ``label`` and ``unit`` for tables and plot axes (:meth:`heading`),
    ``definition`` in words, ``produced_by`` one of :data:`EVALUATIONS`.

    ``lower_is_better``: the direction of improvement; ``error``: an error expected to fall
    with scale (a decreasing power law is expected); ``not_fitted``: why no scaling law is
    fitted ("" = fitted); ``oracle``: a property of the reference run, not of the model
    (left out of the model table; still in the results and points.csv); ``summary``: one
    of the rows of the demo's README table.
    """

    name: str
    label: str
    unit: str
    definition: str
    produced_by: str
    lower_is_better: bool = True
    error: bool = True
    not_fitted: str = ""
    oracle: bool = False
    summary: bool = False

    @property
    def fitted(self) -> bool:
        """Whether scaling laws of this metric are fitted."""
        return not self.not_fitted

    def heading(self) -> str:
        """Table heading and plot-axis label: ``label (unit)``, or the label alone for
        dimensionless metrics."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


_SE = "an error bar of another metric, reported with it"
_COUNT = "a count of the evaluation, not a property that scales"
_FLAG = "a 0/1 flag of one run; its value is in the continuous metric it flags"
_REFERENCE = "a property of the oracle's run, not of the model: it does not scale with it"


def _with_se(base: Metric, detail: str = "over structures") -> tuple[Metric, Metric]:
    """``base`` and its standard-error entry ``<name>_se`` (same unit and evaluation)."""
    return base, replace(base, name=f"{base.name}_se", label=f"{base.label} SE",
                         definition=f"standard error of the {base.label} {detail}",
                         lower_is_better=True, not_fitted=_SE, summary=False)


_LOSS = ("training loss on the test split: 2.5·MAE(E/atom) + 20·L2MAE(F) + 5·MAE(σ_iso) "
         "+ 5·MAE(σ_aniso)")
_ENTRIES = (
    Metric("test_loss", "test loss", "", _LOSS, "test", summary=True),
    Metric("energy_mae", "energy MAE", "eV/atom", "mean |E − E_ref| / N over test structures",
           "test", summary=True),
    Metric("energy_rmse", "energy RMSE", "eV/atom", "root mean square of (E − E_ref) / N",
           "test"),
    Metric("force_mae", "force MAE", "eV/Å", "mean |F − F_ref| over force components", "test",
           summary=True),
    Metric("force_rmse", "force RMSE", "eV/Å", "root mean square of F − F_ref components",
           "test"),
    Metric("stress_mae", "stress MAE", "eV/Å³", "mean |σ − σ_ref| over stress components",
           "test", summary=True),
    Metric("stress_rmse", "stress RMSE", "eV/Å³", "root mean square of σ − σ_ref components",
           "test"),
    *_with_se(Metric("relax_energy_error", "relaxed-energy error", "eV/atom",
                     "mean |E/N| difference between the model's and the oracle's relaxed "
                     "structures, a failed model relaxation counted as 1 eV/atom", "relax",
                     summary=True)),
    *_with_se(Metric("relax_energy_error_converged", "relaxed-energy error (converged)",
                     "eV/atom", "relaxed-energy error over the converged model relaxations "
                     "only", "relax",
                     not_fitted="the failures it leaves out change with the model: "
                     "relax_energy_error (failures counted) is the fitted one")),
    *_with_se(Metric("relax_rmsd", "relaxation RMSD", "normalised",
                     "RMS minimum-image displacement between the two relaxed copies (same "
                     "start, same atom order, mean shift removed) / (V/N)^(1/3); a failed "
                     "relaxation counts 1", "relax", summary=True)),
    Metric("relax_structures", "relaxed structures", "structures",
           "structures relaxed by model and oracle", "relax", error=False, not_fitted=_COUNT),
    *_with_se(Metric("relax_failure_rate", "relaxation failure rate", "fraction",
                     "model relaxations not converged in 500 steps or exploded", "relax")),
    *_with_se(Metric("relax_steps", "relaxation steps", "steps",
                     "mean FIRE steps of the model's relaxations", "relax", error=False)),
    *_with_se(Metric("relax_adwt", "relaxation ADwT", "fraction",
                     "average distance within threshold (0.01–0.5 Å) of the relaxed positions "
                     "(fixed cell)", "relax_fixed", lower_is_better=False, error=False)),
    *_with_se(Metric("md_drift", "NVE energy drift", "meV/atom/ps",
                     "|slope| of E_total/N against time after the first 20 % of the steps",
                     "md"), "slope"),
    Metric("md_drift_resolved", "drift resolved", "0/1",
           "1 when the drift exceeds twice its standard error (else below the noise floor)",
           "md", error=False, not_fitted=_FLAG),
    Metric("md_unstable", "MD unstable", "0/1", "1 when the model's NVE run blew up", "md",
           error=False, not_fitted=_FLAG),
    Metric("md_stability", "MD stability", "fraction",
           "fraction of the NVE steps completed before a blow-up", "md",
           lower_is_better=False, error=False),
    *_with_se(Metric("rdf_error", "RDF error", "relative",
                     "∫|g_model − g_oracle| dr / ∫|g_oracle − 1| dr over the NVE trajectories",
                     "md", summary=True), "(block standard error, 4 blocks of frames)"),
    Metric("relax_oracle_failures", "oracle relaxation failures", "structures",
           "oracle relaxations that did not converge (left out)", "relax",
           not_fitted=_REFERENCE, oracle=True),
    Metric("md_oracle_drift", "oracle NVE drift", "meV/atom/ps",
           "energy drift of the oracle's own NVE run (the integrator's noise floor)", "md",
           not_fitted=_REFERENCE, oracle=True),
    Metric("md_oracle_stability", "oracle MD stability", "fraction",
           "fraction of the oracle's NVE steps completed", "md", lower_is_better=False,
           error=False, not_fitted=_REFERENCE, oracle=True),
)
# --- phonons and elastic constants (scaling/downstream/phonons.py, elastic.py) ---------
EVALUATIONS += ("phonons", "elastic")
_ENTRIES += (
    *_with_se(Metric("phonon_freq_mae", "phonon frequency MAE", "THz",
                     "mean |ν_model − ν_oracle| over the sorted phonon modes of each calculator's "
                     "relaxed structure (finite displacements, supercell Γ = commensurate q)",
                     "phonons")),
    *_with_se(Metric("phonon_imag_fraction", "spurious imaginary modes", "fraction",
                     "imaginary modes (ν < −0.1 THz) beyond the oracle's, per mode", "phonons")),
    Metric("phonon_structures", "phonon structures", "structures",
           "structures whose phonons were compared", "phonons", error=False,
           not_fitted=_COUNT),
    *_with_se(Metric("elastic_mae", "elastic-constant MAE", "GPa",
                     "mean |C_ij,model − C_ij,oracle| over the 21 independent components of the "
                     "relaxed-ion elastic tensor (±0.5 % strains on each relaxed cell)",
                     "elastic")),
    *_with_se(Metric("bulk_modulus_error", "bulk-modulus error", "GPa",
                     "|B_model − B_oracle|, Voigt bulk moduli of the elastic tensors",
                     "elastic")),
    Metric("elastic_structures", "elastic structures", "structures",
           "structures whose elastic tensors were compared", "elastic", error=False,
           not_fitted=_COUNT),
)
# --- end phonons and elastic constants ------------------------------------------------
# --- standard errors of the test-split metrics (mlip_scaling.accuracy.standard_errors) -
_TEST_SE = {"test_loss": "over test structures (delta method of the weighted sum of ratios)",
            "force_mae": "over test structures (a structure, not an atom, is one unit)",
            "stress_mae": "over the stress-labelled test structures",
            **{f"{k}_rmse": "over test structures (SE of the mean square / (2·RMSE))"
               for k in ("energy", "force", "stress")}}
_ENTRIES = tuple(e for m in _ENTRIES for e in (  # each SE right after its metric
    _with_se(m, _TEST_SE.get(m.name, "over test structures")) if m.produced_by == "test"
    else (m,)))
# --- end standard errors of the test-split metrics ------------------------------------
#: metric name -> :class:`Metric`, in table order
REGISTRY: dict[str, Metric] = {m.name: m for m in _ENTRIES}
#: names of the metrics whose scaling laws are fitted, in table order
FITTED: tuple[str, ...] = tuple(m.name for m in _ENTRIES if m.fitted)
#: the metric that chooses the runs (usable records, slices, the compute frontier)
SELECTION = "test_loss"
_AXES = {"data": "training structures N_data", "params": "parameters N_params",
         "compute": "training compute (FLOP)"}


def metric(name: str) -> Metric:
    """The registered metric ``name``; an unknown name gets a plain entry (raw key, no unit)
    so new record fields still show."""
    return REGISTRY.get(name) or Metric(name, name, "", "not in the metric registry", "",
                                        not_fitted="not in the metric registry")


def produced_by(evaluation: str) -> tuple[str, ...]:
    """Names of the metrics ``evaluation`` (one of :data:`EVALUATIONS`) produces."""
    if evaluation not in EVALUATIONS:
        raise ValueError(f"unknown evaluation {evaluation!r} (one of {', '.join(EVALUATIONS)})")
    return tuple(m.name for m in _ENTRIES if m.produced_by == evaluation)


def select(values: dict[str, Any], evaluation: str) -> dict[str, Any]:
    """The registered metrics of ``evaluation`` from its result dict ``values``; KeyError
    naming the metric when one is not there (the registry and the code disagree)."""
    missing = [k for k in produced_by(evaluation) if k not in values]
    if missing:
        raise KeyError(f"the {evaluation} evaluation did not produce {', '.join(missing)}")
    return {k: values[k] for k in produced_by(evaluation)}


def axis_label(axis: str) -> str:
    """Axis label of a scaling axis (``data``, ``params``, ``compute``) with its unit."""
    return _AXES[axis]


def test_metrics(potential: Potential, source: Any, indices: Sequence[int],
                 batch_size: int = 16) -> dict[str, float | None]:
    """energy_mae/rmse (eV/atom), force_mae/rmse (eV/Å), stress_mae/rmse (eV/Å^3), test_loss,
    and the standard error ``<name>_se`` of each (test structures as independent units).

    ``source[i]`` are labelled structures (store items or ASE Atoms); the potential is run
    in its own dtype on the CPU, in batches of ``batch_size`` structures.
    """
    import numpy as np

    from mlip_scaling.accuracy import (
        LossWeights,
        finish_metrics,
        loss_from_sums,
        standard_errors,
        structure_errors,
    )
    from mlip_scaling.data.atomic_data import collate
    from mlip_scaling.data.dataset import prepare
    from mlip_scaling.errors import DataError

    if not len(indices):
        raise DataError("the test split is empty: no structure to evaluate (a larger dataset "
                        "or a smaller --max-test / train size)")
    dtype = potential.dtype
    items = prepare(source, indices, potential.cutoff, {}, "test split", dtype)
    parts = []
    for k in range(0, len(items), batch_size):
        batch = collate(items[k:k + batch_size])
        parts.append(structure_errors(potential(batch), batch))
    rows = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    sums = {name: float(v.sum()) for name, v in rows.items()}
    weights = LossWeights()
    return select({**finish_metrics(sums), "test_loss": loss_from_sums(sums, weights),
                   **standard_errors(rows, weights)}, "test")


test_metrics.__test__ = False  # not a pytest test despite the name
