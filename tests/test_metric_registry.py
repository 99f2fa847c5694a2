"""The metric registry and the code that produces metrics agree, in both directions."""

from __future__ import annotations

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from scripts import load_script
from test_evaluate import _structures

from mlip_scaling.accuracy import METRIC_FUNCTIONS
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model, get_preset
from mlip_scaling.scaling.downstream import md, relax
from mlip_scaling.scaling.metrics import (
    EVALUATIONS,
    FITTED,
    REGISTRY,
    SELECTION,
    metric,
    produced_by,
    select,
    test_metrics,
)

PAIRS = [{"oracle_ok": True, "ok": False, "steps": 500, "energy_error": None, "rmsd": None,
          "displacement": None},
         {"oracle_ok": True, "ok": True, "steps": 10, "energy_error": 0.1, "rmsd": 0.2,
          "displacement": 0.05},
         {"oracle_ok": False, "ok": False, "steps": 0, "energy_error": None, "rmsd": None,
          "displacement": None}]


def test_test_split_metrics_match_the_registry():
    family, config = get_preset("transformer-1.2k")
    potential = Potential(build_model(family, config), family, config, species=[29],
                          reference_energies={29: 0.0}).double().eval()
    out = test_metrics(potential, _structures(3), range(3))
    values = {*METRIC_FUNCTIONS, "test_loss"}
    assert set(out) == set(produced_by("test")) == values | {f"{k}_se" for k in values}
    assert all(v is not None and v >= 0 for v in out.values())


def test_relaxation_metrics_match_the_registry():
    free = relax.summarise(PAIRS, fixed_cell=False)
    fixed = relax.summarise(PAIRS, fixed_cell=True)
    assert set(free) == set(produced_by("relax"))
    assert set(fixed) - set(free) == set(produced_by("relax_fixed"))
    assert select(fixed, "relax_fixed")["relax_adwt"] is not None
    assert free["relax_oracle_failures"] == 1


def test_md_metrics_match_the_registry():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    out = md.md_errors(atoms, EMT(), EMT(), temperature_K=300.0, steps=10)
    assert set(out) == set(produced_by("md"))
    assert out["md_oracle_stability"] == 1.0


def test_every_entry_is_complete():
    assert {m.produced_by for m in REGISTRY.values()} == set(EVALUATIONS)
    for m in REGISTRY.values():
        assert m.label and m.definition, m.name
        assert m.fitted == (m.name in FITTED), m.name
        assert not (m.oracle and m.fitted), f"{m.name}: a reference-run property is fitted"
    assert metric("unknown_thing").heading() == "unknown_thing"
    assert not metric("unknown_thing").fitted
    assert not REGISTRY["md_stability"].lower_is_better
    assert REGISTRY["relax_adwt_se"].produced_by == "relax_fixed"
    assert REGISTRY[SELECTION].fitted and REGISTRY[SELECTION].produced_by == "test"


def test_select_names_a_metric_the_code_did_not_produce():
    with pytest.raises(KeyError, match="relax_adwt"):
        select(relax.summarise(PAIRS, fixed_cell=False), "relax_fixed")
    with pytest.raises(ValueError, match="unknown evaluation"):
        produced_by("thermal_conductivity")


def test_demo_summary_rows_come_from_the_registry():
    module = load_script("examples/demo_summary.py")
    assert list(module.METRICS) == [m.name for m in REGISTRY.values() if m.summary]
    assert set(module.METRICS) <= set(FITTED)
