"""A scaling study from one plan file: dataset, converged sweeps per family, evaluation, fits.

A study plan (YAML, keys of :class:`StudySpec`) names the dataset recipe, the families and
their size ladders, the training-set sizes, the seeds, the convergence rule and the
evaluation settings. Each family gets two sweeps on the same data and training recipe:

* the **data axis**: its largest model at every training-set size;
* the **parameter axis**: every model at the largest training-set size;

(the corner run is shared), each cell once per seed, every run in convergence mode (the
step cap bounds it, ``patience`` stops it, the best-validation weights are exported). The
report's slices pick exactly these runs: the only complete slice of each axis.

Everything is resumable: the dataset is generated once (its chunks survive an
interruption), finished runs are skipped and unfinished ones resume from ``last.pt``,
and evaluations are cached by model-file hash. Rerunning the command continues.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlip_scaling.cli_args import NON_NEGATIVE, OPEN_FRACTION, POSITIVE_INT, SEED
from mlip_scaling.errors import ConfigError
from mlip_scaling.options import coerce_options, load_mapping, option
from mlip_scaling.scaling.eval_settings import EvalSettings

__all__ = ["StudySpec", "load_study", "only_families", "study_plans", "study_runs", "run_study",
           "dataset_path"]


@dataclass
class StudySpec:
    """What a study trains and measures (sizes in structures, steps in optimiser steps)."""

    recipe: str = option("sw-small", "mlip-data generate recipe of the dataset")
    structures: int = option(1000, "structures generated", rule=POSITIVE_INT)
    data_seed: int = option(0, "seed of the generated dataset", rule=SEED)
    families: dict = option(factory=dict, help="family label -> its presets, smallest first")
    train_sizes: list = option(factory=list, rule=POSITIVE_INT, help="the data axis")
    seeds: list = option(factory=lambda: [0, 1], rule=SEED, help="seeds of every cell")
    cap_steps: int = option(3000, "step cap of every run (its cosine schedule spans it)",
                            rule=POSITIVE_INT)
    patience: int = option(5, "validations without improvement that stop a run",
                           rule=POSITIVE_INT)
    min_delta: float = option(0.01, "relative improvement that counts", rule=OPEN_FRACTION)
    min_steps: float = option(0, "no early stop before this step (fraction (<1) of the cap "
                              "or steps)", rule=NON_NEGATIVE)
    train: dict = option(factory=dict, help="mlip-train options of every run")
    evaluate: dict = option(factory=dict, help="evaluation settings (mlip-scaling evaluate)")

    def check(self, where: str) -> StudySpec:
        """ConfigError naming ``where`` for an empty or malformed families/sizes entry."""
        if not self.families or not self.train_sizes:
            raise ConfigError(f"{where}: a study needs families and train_sizes")
        for label, presets in self.families.items():
            if not isinstance(presets, list) or not presets or not all(
                    isinstance(p, str) for p in presets):
                raise ConfigError(f"{where}: families.{label} must be a list of preset names")
        self.train = coerce_options(_train_config(), self.train, f"{where}: train: ")
        self.evaluate = coerce_options(EvalSettings, self.evaluate, f"{where}: evaluate: ")
        return self


def _train_config() -> type:
    from mlip_scaling.train_config import TrainConfig

    return TrainConfig


def load_study(path: str | Path) -> StudySpec:
    """The study plan in ``path``, checked (one-line ConfigError naming the file)."""
    options = coerce_options(StudySpec, load_mapping(path, "study plan"), f"{path}: ")
    return StudySpec(**options).check(str(path))


def only_families(spec: StudySpec, labels: list[str], where: str) -> StudySpec:
    """The plan restricted to the family ``labels`` (ConfigError naming an unknown one)."""
    unknown = [label for label in labels if label not in spec.families]
    if unknown:
        raise ConfigError(f"{where}: no family {', '.join(map(repr, unknown))} in the plan "
                          f"(it has {', '.join(spec.families)})")
    return dataclasses.replace(spec, families={k: v for k, v in spec.families.items()
                                               if k in labels})


def dataset_path(spec: StudySpec, out: Path) -> Path:
    """Where the study's dataset lives (its name says how it was made)."""
    return out / "data" / f"{spec.recipe}-{spec.structures}-s{spec.data_seed}.h5"


def study_plans(spec: StudySpec, out: Path) -> list[tuple[str, Any]]:
    """``[(label, SweepPlan)]``: per family the data-axis and the parameter-axis sweep."""
    from mlip_scaling.scaling.sweep import sweep_plan

    common = {"out": str(out / "runs"), "data": str(dataset_path(spec, out)),
              "seeds": list(spec.seeds), "fixed_steps": spec.cap_steps,
              "patience": spec.patience, "min_delta": spec.min_delta,
              "min_steps": spec.min_steps}
    plans = []
    for label, presets in spec.families.items():
        for axis, models, sizes in (("data", presets[-1:], spec.train_sizes),
                                    ("params", presets, [max(spec.train_sizes)])):
            plan = sweep_plan({}, {**common, "models": list(presets if axis == "params"
                                                             else models),
                                   "train_sizes": list(sizes), "train": dict(spec.train)})
            plans.append((f"{label}/{axis}", plan))
    return plans


def study_runs(spec: StudySpec, out: Path) -> list:
    """Every training run of the study once (the corner cells are shared by both axes)."""
    from mlip_scaling.scaling.sweep import sweep_runs

    runs: dict[str, Any] = {}
    for _, plan in study_plans(spec, out):
        for run in sweep_runs(plan, check_out=False):
            runs.setdefault(run.name, run)
    return list(runs.values())


def _generate(spec: StudySpec, out: Path, jobs: int, quiet: bool) -> Path:
    from mlip_scaling.data.generate import generate_dataset

    path = dataset_path(spec, out)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate_dataset(None, spec.structures, path, seed=spec.data_seed, workers=jobs,
                         recipe=spec.recipe, progress=not quiet)
    return path


def _train(spec: StudySpec, out: Path, jobs: int) -> int:
    from mlip_scaling.scaling.sweep import is_finished, plan_mismatches, run_sweep

    runs = study_runs(spec, out)
    todo = [r for r in runs if not is_finished(r)]
    for r in runs:
        stale = [] if r in todo else plan_mismatches(r)
        if stale:
            raise ConfigError(f"{r.export}: trained with other settings than the study plan "
                              f"({'; '.join(stale)}); remove it or choose another --out")
    print(f"study: {len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to run",
          flush=True)
    return run_sweep(todo, out / "runs", jobs=jobs, quiet=True) if todo else 0


def run_study(spec: StudySpec, out: str | Path, jobs: int = 2, quiet: bool = False,
              n_perm: int = 1000) -> Path:
    """Generate, train, evaluate and fit; returns the report folder (``OUT/report``).
    Rerunning continues where an interrupted call stopped."""
    from mlip_scaling.scaling.evaluate import evaluate_missing, missing_models
    from mlip_scaling.scaling.report import write_report

    out = Path(out)
    _generate(spec, out, jobs, quiet)
    if _train(spec, out, jobs):
        raise ConfigError(f"{out}: some study runs failed (see their train.log); rerun to "
                          "retry them")
    runs = out / "runs"
    settings = {f.name: None for f in dataclasses.fields(EvalSettings)}
    settings.update(spec.evaluate)
    if missing_models(runs):
        print("study: evaluating the model files", file=sys.stderr, flush=True)
        evaluate_missing(runs, settings, jobs=jobs, progress=not quiet)
    report = out / "report"
    write_report(runs, report, n_perm=n_perm, quiet=quiet)
    return report
