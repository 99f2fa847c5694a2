"""The reference study's plans, the sweep's convergence mode, and the smoke study end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scripts import ROOT, load_script

from mlip_scaling.errors import ConfigError
from mlip_scaling.models import registry
from mlip_scaling.scaling import sweep
from mlip_scaling.scaling.report import fit_records
from mlip_scaling.scaling.study import load_study, run_study, study_runs

PLANS = ["studies/smoke.yaml", "studies/reference.yaml"]


@pytest.mark.parametrize("plan", PLANS)
def test_plan_is_a_data_and_a_parameter_axis_per_family(plan, tmp_path):
    spec = load_study(ROOT / plan)
    runs = {r.name: r.config for r in study_runs(spec, tmp_path)}
    big = max(spec.train_sizes)
    expected = set()
    for label, presets in spec.families.items():
        assert [registry.get_preset(p)[0] for p in presets] == [label] * len(presets)
        sizes = [registry.PRESET_PARAMS[p] for p in presets]
        assert sizes == sorted(sizes)
        cells = {(presets[-1], n) for n in spec.train_sizes} | {(p, big) for p in presets}
        expected |= {f"{m}-n{n}-s{s}" for m, n in cells for s in spec.seeds}
    assert set(runs) == expected
    for cfg in runs.values():
        assert cfg.patience == spec.patience and cfg.max_steps == spec.cap_steps
        assert cfg.resume and cfg.data.endswith(".h5")


def test_reference_plan_meets_the_study_requirements():
    spec = load_study(ROOT / "studies/reference.yaml")
    assert np.log10(max(spec.train_sizes) / min(spec.train_sizes)) >= 1.5
    assert len(spec.seeds) >= 2 and len(spec.families) >= 4
    assert all(len(p) >= 4 for p in spec.families.values())
    assert list(spec.families) == ["transformer-seed", "transformer-vec", "transformer",
                                   "transformer-m", "eqv2-l1", "eqv2-l3"]
    table = load_script("studies/study_table.py")
    assert set(spec.families) <= set(table.SYMMETRY) == set(table.RANK)
    assert spec.evaluate["k_relax"] > 0 and spec.evaluate["md_steps"] > 0


def test_bad_study_plan_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("families: {transformer: transformer-1.2k}\ntrain_sizes: [8]\n")
    with pytest.raises(ConfigError, match="bad.yaml: families.transformer must be a list"):
        load_study(bad)
    bad.write_text("families: {transformer: [transformer-1.2k]}\ntrain_sizes: [8]\n"
                   "train: {patiense: 3}\n")
    with pytest.raises(ConfigError, match="bad.yaml: train: unknown option"):
        load_study(bad)


def test_sweep_seeds_and_convergence_mode(tmp_path):
    runs = sweep.plan_runs(tmp_path, ["transformer-1.2k"], [10], None, fixed_steps=50,
                           seeds=[0, 3], stop={"patience": 4, "min_delta": 0.02})
    assert [r.name for r in runs] == ["transformer-1.2k-n10-s0", "transformer-1.2k-n10-s3"]
    assert [r.config.seed for r in runs] == [0, 3]
    assert {(r.config.patience, r.config.min_delta, r.config.max_steps) for r in runs} == {
        (4, 0.02, 50)}
    assert "--patience" in runs[0].command
    with pytest.raises(ConfigError, match="seed"):
        sweep.plan_runs(tmp_path, ["transformer-1.2k"], [10], 1, seed=1, seeds=[0, 1])


def _record(n: int, seed: int, converged: bool | None, mae: float) -> dict:
    return {"checkpoint": f"m-n{n}-s{seed}.pt", "family": "transformer", "n_params": 1000,
            "n_train": n, "flops": 1e9 * n, "status": "ok", "converged": converged,
            "metrics": {"test_loss": mae, "force_mae": mae}}


def test_data_axis_rows_say_when_runs_were_still_improving():
    records = [_record(n, s, not (n == 64 and s == 1), 2.0 * n ** -0.3 * (1 + 0.01 * s))
               for n in (16, 32, 64) for s in (0, 1)]
    rows = fit_records(records, metrics=["force_mae"], axes=["data"], n_perm=10)
    assert {r["convergence"] for r in rows} == {"1 of 6 runs still improving at their cap"}
    for r in records:
        r["converged"] = None  # runs without a stopping rule: nothing to say
    assert {r["convergence"] for r in fit_records(records, metrics=["force_mae"],
                                                  axes=["data"], n_perm=10)} == {None}


@pytest.fixture(scope="module")
def table():
    return load_script("studies/study_table.py")


def _fit(family: str, beta: float | None, half: float = 0.05, p: float = 1e-4) -> dict:
    ok = beta is not None
    return {"family": family, "metric": "force_mae", "axis": "data", "form": "power",
            "status": "ok" if ok else "no-trend", "reason": "", "p_trend": p,
            "params": {"alpha": 1.0, "beta": beta} if ok else {},
            "ci": {"beta": [beta - half, beta + half]} if ok else {}, "indicative": False,
            "slice": {"fixed": "n_params", "value": 1}, "x": [1, 10], "y": [1, 0.5]}


def test_table_cells_resolution_and_ordering(table):
    rows = [_fit("transformer-seed", 0.10), _fit("transformer", 0.30),
            _fit("eqv2-l1", 0.45, half=0.1), _fit("eqv2-l3", None, p=0.4)]
    assert table.families(rows) == ["transformer-seed", "transformer", "eqv2-l1", "eqv2-l3"]
    assert table.cell(rows[0]).startswith("0.100 [0.050, 0.150], p 0.0001 ✔")
    assert not table.resolved(rows[2]) and "✔" not in table.cell(rows[2])  # half-width 0.1
    assert table.cell(rows[3]) == "— (no-trend, p 0.4)"
    assert "holds" in table.ordering(rows[:2])
    assert "overlap" in table.ordering(rows[1:3])
    assert "contradicted" in table.ordering([_fit("transformer-seed", 0.5), rows[1]])
    # two unconstrained families: each is held against the invariant one, not each other
    two = [_fit("transformer-seed", 0.1), _fit("transformer-vec", 0.15), rows[1]]
    assert table.ordering(two).startswith("the ordering transformer-seed/transformer-vec < "
                                          "transformer holds")
    assert "not tested" in table.ordering(two[:2])


def _results(path, records, walls=None):
    path.mkdir(parents=True)
    (path / "scaling_results.json").write_text(json.dumps(
        {"format": "mlip-scaling-results/1", "records": records}))
    if walls is not None:
        (path / "train_walls.json").write_text(json.dumps(walls))
    return path


def test_merge_results_fits_families_run_apart(tmp_path, table):
    merge = load_script("studies/merge_results.py")

    def family(name, beta, dataset="sw-small-1000-s0"):
        out = [_record(n, s, True, 2.0 * n ** -beta * (1 + 0.02 * s)) for n in (8, 16, 32, 64)
               for s in (0, 1)]
        for r in out:
            r.update(family=name, checkpoint=f"{name}-{r['checkpoint']}",
                     dataset_name=dataset, dataset_hash=f"{name}-cpu")  # hashes differ
        return out

    a = _results(tmp_path / "a", family("transformer", 0.3), {"transformer": 60.0})
    b = _results(tmp_path / "b", family("transformer-vec", 0.2))
    assert merge.main([str(tmp_path / "m"), str(a), str(b), "-q"]) == 0
    rows = json.loads((tmp_path / "m" / "report" / "fits.json").read_text())["fits"]
    data = {r["family"]: r["params"]["beta"] for r in rows
            if (r["metric"], r["axis"], r["form"]) == ("force_mae", "data", "power")}
    assert data == pytest.approx({"transformer": 0.3, "transformer-vec": 0.2}, abs=0.02)
    assert table.training_walls(tmp_path / "m") == {"transformer": 60.0}
    with pytest.raises(SystemExit, match="2"):  # a family from two sources
        merge.main([str(tmp_path / "m2"), str(a), str(a)])
    c = _results(tmp_path / "c", family("eqv2-l1", 0.4, dataset="sw-small-500-s0"))
    with pytest.raises(SystemExit, match="2"):  # another dataset
        merge.main([str(tmp_path / "m3"), str(a), str(c)])


def test_smoke_study_end_to_end(tmp_path, table, capsys):
    spec = load_study(ROOT / "studies/smoke.yaml")
    report = run_study(spec, tmp_path, jobs=2, quiet=True, n_perm=20)
    records = json.loads((tmp_path / "runs" / "scaling_results.json").read_text())["records"]
    assert len(records) == len(study_runs(spec, tmp_path))
    assert all(isinstance(r["converged"], bool) and r["status"] == "ok" for r in records)
    assert all(r["metrics"].get("relax_energy_error") is not None for r in records)
    rows = json.loads((report / "fits.json").read_text())["fits"]
    assert {r["family"] for r in rows} == set(spec.families)
    assert all(r["convergence"] for r in rows if r["axis"] == "data")
    models = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/*.pt")}
    capsys.readouterr()
    run_study(spec, tmp_path, jobs=2, quiet=True, n_perm=20)  # resumed: nothing to train
    assert "6 finished, 0 to run" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in models} == models  # nothing retrained
    doc = tmp_path / "study.md"
    doc.write_text(f"intro\n{table.BEGIN}\nold\n{table.END}\nend\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"front\n{table.BEGIN}\nold\n{table.END}\n")
    assert table.main([str(tmp_path), "--doc", str(doc), "--figure",
                       str(tmp_path / "lc.png"), "--readme", str(readme)]) == 0
    text = doc.read_text()
    assert "old" not in text and "| transformer |" in text and text.endswith("end\n")
    assert "Against published results" in text and "[compare" not in text
    front = readme.read_text()
    assert "| transformer |" in front and "](study.md)" in front and "](lc.png)" in front
    assert (tmp_path / "lc.png").stat().st_size > 1000


def test_sw_small_recipe_keeps_cells_small():
    from mlip_scaling.data.generate import get_recipe, make_structure

    recipe = get_recipe("sw-small")
    sizes = [len(make_structure(recipe, k, seed=0)[0]) for k in range(40)]
    assert recipe.oracle == "sw" and max(sizes) <= 16 and min(sizes) >= 1
    assert len(set(sizes)) >= 4  # still a spread of cell sizes
    default = [len(make_structure(get_recipe("sw"), k, seed=0)[0]) for k in range(40)]
    assert max(default) > 16  # the cap is the recipe's, not a global change


def test_rotated_copies_turn_the_labels_with_the_structure():
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rotated = load_script("studies/rotated_test.py").rotated
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.1, seed=1)
    atoms.calc = EMT()
    turned, forces = rotated(atoms, seed=3)
    assert not np.allclose(turned.positions, atoms.positions)
    turned.calc = EMT()
    np.testing.assert_allclose(turned.get_forces(), forces, atol=1e-10)
    assert turned.get_potential_energy() == pytest.approx(atoms.get_potential_energy())
