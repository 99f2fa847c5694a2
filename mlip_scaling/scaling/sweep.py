"""``mlip-scaling sweep``: a grid of trainings (models x data sizes x compute budgets).

Each run is one :class:`~mlip_scaling.train_config.TrainConfig`, trained by an ``mlip-train``
process (its flags derived from the config) in ``OUT/<model>-n<N>[-c<FLOPs>]`` exporting
``<run>.pt`` there. Runs whose exported model exists are skipped; the others start with
``resume`` (fresh when there is no ``last.pt``), so an interrupted sweep is resumed by
re-running it. Locally the runs go one after another (``jobs``: N at a time); Slurm gets one
submitit array job.

A YAML plan file holds the keys of :data:`PLAN_KEYS`: models, train_sizes, fixed_steps or
epochs, max_flops, data, seed, out, train (a mapping of mlip-train options, as in its
``--config`` file) and train_args (a list of mlip-train arguments).

Training length: fixed steps S (the default, S = 500) gives every run exactly S optimiser
steps with the cosine schedule spanning those S steps, whatever its data size, so the data
axis varies data only (``max_steps = epochs = S``: an epoch has at least one step, so the
epoch cap never binds). Epochs E instead trains E passes over each training set (more steps
for larger sets); the checkpoint's ``train.budget`` records which ("steps", "epochs" or
"flops").

Convergence mode (``patience`` N): every run stops after N validations without a relative
improvement of ``min_delta`` in its validation loss and exports its best-validation weights;
``epochs`` (or ``fixed_steps``) is then only a cap, and the model file records whether the
run converged (``train.converged``) or hit the cap while still improving; ``min_steps``
keeps runs going until the rate has annealed. ``seeds`` repeats
every cell once per seed (run names end in ``-s<seed>``).
"""

from __future__ import annotations

import dataclasses
import itertools
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlip_scaling.cli_args import (
    NON_NEGATIVE,
    OPEN_FRACTION,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    add_output_flags,
    check_output_dir,
)
from mlip_scaling.errors import ConfigError
from mlip_scaling.models.registry import resolve_model, stored_form
from mlip_scaling.options import coerce_options, load_mapping, option
from mlip_scaling.scaling.launch_local import is_finished, run_local
from mlip_scaling.train_config import (
    TrainConfig,
    config_args,
    explicit_options,
    load_config_file,
    steps_of,
    train_parser,
)

__all__ = ["Run", "SweepPlan", "plan_runs", "is_finished", "plan_mismatches", "load_plan",
           "sweep_plan", "sweep_runs", "run_sweep", "PLAN_KEYS", "DEFAULT_FIXED_STEPS"]

DEFAULT_FIXED_STEPS = 500


@dataclass
class SweepPlan:
    """What a sweep trains: the flags of ``mlip-scaling sweep`` and the keys of a plan file."""

    models: list = option(factory=lambda: ["transformer-1.2k", "transformer-7.0k"],
                          help="comma-separated presets or families (their default preset)")
    train_sizes: list = option(factory=lambda: [100, 300, 1000], rule=POSITIVE_INT,
                               help="comma-separated numbers of training structures")
    fixed_steps: int | None = option(
        None, "optimiser steps of every run, whatever its data size (the schedule spans "
        f"exactly these; default {DEFAULT_FIXED_STEPS} unless --epochs is given)",
        rule=POSITIVE_INT)
    epochs: int | None = option(None, "epochs per run instead of fixed steps (larger training "
                                "sets then train for more steps)", rule=POSITIVE_INT)
    max_flops: list = option(factory=list, rule=POSITIVE,
                             help="comma-separated FLOP budgets (one run per budget)")
    data: str | None = option(None, "dataset (default: the embedded one)")
    seed: int | None = option(None, "seed of every run (default: mlip-train's)", rule=SEED)
    seeds: list = option(factory=list, rule=SEED, help="comma-separated seeds: every cell "
                         "once per seed (run names end in -s<seed>); instead of --seed")
    patience: int | None = option(
        None, "convergence mode: stop each run after this many validations without a "
        "relative improvement of --min-delta and export its best-validation weights "
        "(--epochs or --fixed-steps is then a cap)", rule=POSITIVE_INT)
    min_delta: float | None = option(None, "with --patience: the smallest relative decrease "
                                     "of the validation loss that counts (default: "
                                     "mlip-train's)", rule=OPEN_FRACTION)
    min_steps: float | None = option(
        None, "with --patience: no run stops before this step (a fraction (<1) of its steps "
        "or a number of steps; default: mlip-train's)", rule=NON_NEGATIVE)
    out: str = option("sweep", "sweep folder (one sub-folder per run)")
    train: dict = option(factory=dict, help="mlip-train options of every run: a JSON object "
                         "(in a plan file a mapping, as in mlip-train's --config file)")
    train_args: list = option(factory=list, split=shlex.split, help="extra mlip-train "
                              "arguments, quoted, e.g. \"--batch-size 16 --lr 1e-3\" (or give "
                              "them after --)")


#: Keys of a plan file.
PLAN_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SweepPlan))


@dataclass
class Run:
    """One training of the sweep: its name and its training options."""

    name: str
    config: TrainConfig
    output_flags: tuple[str, ...] = ()  # -q / -v of mlip-train: not part of the config

    @property
    def out(self) -> Path:
        return Path(str(self.config.out))

    @property
    def export(self) -> Path:
        return self.out / str(self.config.export)

    @property
    def command(self) -> list[str]:
        """The ``mlip-train`` process that trains this run."""
        return [sys.executable, "-m", "mlip_scaling.training.cli", *config_args(self.config),
                *self.output_flags]


def _config(base: dict[str, Any], overrides: dict[str, Any], name: str) -> TrainConfig:
    """The run's config: ``base`` (set by the sweep) < ``overrides`` (its train options),
    checked like mlip-train checks its own (ConfigError naming the run)."""
    try:
        cfg = TrainConfig(**{**base, **overrides}).validate()
        resolve_model(cfg.model, cfg.params, cfg.model_config)
    except ConfigError as exc:
        raise ConfigError(f"mlip-train rejects the options of run {name}: {exc}") from None
    return cfg


def _train_overrides(train: dict[str, Any], train_args: list[str]
                     ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(options, output flags) of mlip-train arguments: ``train`` < ``--config FILE`` <
    the flags; ``-q``/``-v`` are kept as flags."""
    parser = train_parser()
    parser.add_argument("--config")
    add_output_flags(parser)
    try:
        given = explicit_options(parser, train_args)
    except ConfigError as exc:
        raise ConfigError(f"mlip-train rejects the sweep's train arguments: {exc}") from None
    output = ("-q",) * bool(given.pop("quiet", False)) + ("-v",) * given.pop("verbose", 0)
    config = given.pop("config", None)
    return {**train, **(load_config_file(config) if config else {}), **given}, output


def plan_runs(out: str | Path, models: list[str], train_sizes: list[int], epochs: int | None,
              max_flops: list[float] | None = None, data: str | None = None,
              train_args: list[str] | None = None, seed: int | None = None,
              fixed_steps: int | None = None, train: dict[str, Any] | None = None,
              seeds: list[int] | None = None, stop: dict[str, Any] | None = None
              ) -> list[Run]:
    """The grid models x train sizes x FLOP budgets as runs (checked training configs).

    Each run trains ``fixed_steps`` optimiser steps, or ``epochs`` passes when
    ``fixed_steps`` is None (exactly one of the two is given). ``train``: mlip-train options
    of every run (as in a config file), ``train_args``: the same as mlip-train flags (they
    win over ``train`` and over what the sweep sets). ``seeds``: one run per seed and cell
    (instead of ``seed``); ``stop``: the early-stopping options (patience, min_delta).
    """
    if not models or not train_sizes:
        raise ConfigError("a sweep needs at least one --models entry and one --train-sizes entry")
    if (epochs is None) == (fixed_steps is None):
        raise ConfigError("a sweep trains either --fixed-steps S or --epochs E (give one)")
    length = ({"epochs": epochs} if fixed_steps is None else
              {"epochs": fixed_steps, "max_steps": fixed_steps})
    if seeds and seed is not None:
        raise ConfigError("give either seed (--seed) or seeds (--seeds), not both")
    overrides, output = _train_overrides(train or {}, train_args or [])
    stop = {k: v for k, v in (stop or {}).items() if v is not None}
    runs = []
    for model, n, flops, s in itertools.product(models, train_sizes, max_flops or [None],
                                                 seeds or [seed]):
        name = (f"{model}-n{int(n)}" + (f"-c{flops:.3g}".replace("+", "") if flops else "")
                + (f"-s{int(s)}" if seeds else ""))
        base = {"model": model, "train_size": int(n), **length, "out": str(Path(out) / name),
                "resume": True, "export": f"{name}.pt", "max_flops": flops or None, **stop,
                **({"data": str(data)} if data else {}),
                **({"seed": int(s)} if s is not None else {})}
        runs.append(Run(name, _config(base, overrides, name), output))
    return runs


def plan_mismatches(run: Run) -> list[str]:
    """What the finished model file of ``run`` was trained with that the plan no longer says
    (``["lr 0.002 != 0.005", ...]``): hyperparameters, steps (not in convergence mode, where
    a run stops early), patience, learning rate, batch, seed, training-set size. Settings the
    file does not record are not compared."""
    from mlip_scaling.checkpoint import load_checkpoint

    ckpt, cfg = load_checkpoint(run.export), run.config
    train = ckpt.get("train") or {}
    _, _, config = resolve_model(cfg.model, cfg.params, cfg.model_config)
    planned = {"hyperparameters": stored_form(config),
               "steps": None if cfg.patience else cfg.max_steps,  # early stops end sooner
               "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed,
               "n_train_structures": cfg.train_size, "patience": cfg.patience,
               "min_steps": (steps_of(cfg.min_steps, cfg.max_steps)
                             if cfg.patience and cfg.max_steps else None)}
    crit = train.get("stop_criterion")
    stored = {"hyperparameters": stored_form((ckpt.get("model") or {}).get("config")),
              **{k: train.get(k) for k in planned if k != "hyperparameters"},
              "patience": (crit or {}).get("patience"),
              # files from before the floor stopped whenever the patience ran out
              "min_steps": (crit.get("min_steps") or 0) if crit else None}
    out = []
    for key, want in planned.items():
        have = stored[key]
        if want is None or have is None or have == want:
            continue
        if key == "hyperparameters":
            # a key the file lacks was added to the family later, with the old behaviour
            keys = sorted(k for k in set(have) & set(want) if have[k] != want[k])
            if keys:
                out.append(f"hyperparameters {', '.join(keys)}")
        else:
            out.append(f"{key} {have} != {want}")
    return out


def load_plan(path: str | Path) -> dict[str, Any]:
    """The options of a YAML plan file (keys of :class:`SweepPlan`), typed and checked."""
    options = coerce_options(SweepPlan, load_mapping(path, "plan"), f"{path}: ")
    if "train" in options:
        options["train"] = coerce_options(TrainConfig, options["train"], f"{path}: train: ")
    return options


def sweep_plan(flags: dict[str, Any], plan_file: dict[str, Any]) -> SweepPlan:
    """The plan: the command line's ``flags`` (raw values) overridden by a plan file's
    options (from :func:`load_plan`); its ``train`` checked as mlip-train options."""
    plan = SweepPlan(**{**coerce_options(SweepPlan, flags), **plan_file})
    plan.train = coerce_options(TrainConfig, plan.train, "train: ")
    return plan


def sweep_runs(plan: SweepPlan, forward: list[str] | None = None, check_out: bool = True
               ) -> list[Run]:
    """The runs of ``plan`` (``forward``: more mlip-train arguments, after its own)."""
    epochs, steps = _length(plan)
    if check_out:
        check_output_dir(plan.out, "--out")
    return plan_runs(plan.out, _unique(plan.models), _unique(plan.train_sizes), epochs,
                     _unique(plan.max_flops), plan.data, plan.train_args + list(forward or []),
                     plan.seed, steps, plan.train, _unique(plan.seeds),
                     {"patience": plan.patience, "min_delta": plan.min_delta,
                      "min_steps": plan.min_steps})


def _unique(items: list) -> list:
    return list(dict.fromkeys(items))


def _length(plan: SweepPlan) -> tuple[int | None, int | None]:
    """(epochs, fixed steps) of the sweep: one of them, fixed steps by default."""
    if plan.epochs is not None and plan.fixed_steps is not None:
        raise ConfigError("give either fixed_steps (--fixed-steps) or epochs (--epochs), "
                          "not both")
    if plan.epochs is None and plan.fixed_steps is None:
        return None, DEFAULT_FIXED_STEPS
    return plan.epochs, plan.fixed_steps


def _run_command(command: list[str]) -> int:
    """Body of one Slurm array task."""
    return subprocess.run(command, check=True).returncode


def _with_torchrun(command: list[str], gpus: int) -> list[str]:
    """The mlip-train command under ``torchrun`` with one process per GPU (DDP)."""
    if gpus <= 1:
        return command
    return [command[0], "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(gpus), *command[1:]]


def _submit_slurm(runs: list[Run], out: str | Path, slurm: dict[str, Any]) -> int:
    """One submitit array job of ``runs``; ``slurm``: partition, time (min), parallel, gpus,
    cpus."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install "
                          "'mlip-scaling[slurm]'") from None
    executor = submitit.AutoExecutor(folder=Path(out) / "slurm" / "%j")
    partition = {"slurm_partition": slurm["partition"]} if slurm["partition"] else {}
    executor.update_parameters(timeout_min=slurm["time"], gpus_per_node=slurm["gpus"],
                               slurm_array_parallelism=slurm["parallel"],
                               cpus_per_task=slurm["cpus"], **partition)
    with executor.batch():
        jobs = [executor.submit(_run_command, _with_torchrun(r.command, slurm["gpus"]))
                for r in runs]
    print(f"submitted {len(jobs)} runs as Slurm array job {jobs[0].job_id.split('_')[0]}")
    return 0


def run_sweep(todo: list[Run], out: str | Path, launcher: str = "local", jobs: int = 1,
              quiet: bool = False, slurm: dict[str, Any] | None = None) -> int:
    """Train the runs ``todo`` here (``jobs`` at a time) or as a Slurm array
    (``launcher="slurm"``, in ``out``); exit status 1 when a local run failed."""
    if launcher == "slurm":
        return _submit_slurm(todo, out, slurm or {})
    return run_local(todo, jobs, quiet)
