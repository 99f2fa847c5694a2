"""One training run from a :class:`TrainConfig`: model, data, normalisation, loop, export."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mlip_scaling import keys
from mlip_scaling.checkpoint import load_state, save_potential
from mlip_scaling.cli_args import check_output_dir, check_output_file
from mlip_scaling.data import dataset
from mlip_scaling.data.atomic_data import AtomicData
from mlip_scaling.data.splits import SplitSpec
from mlip_scaling.errors import ConfigError
from mlip_scaling.io_utils import exclusive_lock, remove_stale_temps
from mlip_scaling.models import registry
from mlip_scaling.models.potential import Potential
from mlip_scaling.progress import ProgressBar
from mlip_scaling.train_config import LOCK_NAME
from mlip_scaling.training import finetune
from mlip_scaling.training.config import TrainConfig
from mlip_scaling.training.distributed import DistInfo, init_distributed, shutdown
from mlip_scaling.training.flops import FLOPS_COUNTING, pf_days
from mlip_scaling.training.normalization import energy_scale, fit_reference_energies
from mlip_scaling.training.trainer import Trainer, TrainingDiverged

__all__ = ["run_training", "run_paths", "LOCK_NAME"]


def run_paths(cfg: TrainConfig, family: str, n_params: int) -> tuple[Path, Path]:
    """(run directory, export path): defaults ``runs/<name>`` and ``<name>.pt`` inside it."""
    name = f"{family}-{registry.format_size(n_params)}"
    run_dir = Path(cfg.out) if cfg.out else Path("runs") / name
    export = Path(cfg.export) if cfg.export else Path(f"{name}.pt")
    if export.parent == Path("."):
        export = run_dir / export
    return run_dir, export


def _check_fresh(cfg: TrainConfig, run_dir: Path, export: Path) -> None:
    """A fresh run never writes into an earlier run's folder (no mixed metrics)."""
    if cfg.resume:
        return
    for path in (run_dir / "last.pt", run_dir / "metrics.jsonl", export):
        if path.exists():
            raise ConfigError(f"{path} exists: pass --resume to continue that run, or choose "
                              f"another --out/--export (nothing was overwritten)")


def _busy_message(run_dir: Path) -> str:
    return f"{run_dir}: another mlip-train is writing this run folder"


def _check_not_busy(run_dir: Path) -> None:
    """Refuse at once (before preparing data) when a trainer holds the folder's lock.

    Only the first process probes: DDP ranks probing together would see each other.
    """
    lock = run_dir / LOCK_NAME
    if lock.is_file() and os.environ.get("RANK", "0") == "0":
        with exclusive_lock(lock, _busy_message(run_dir)):
            pass


@contextmanager
def _claim(cfg: TrainConfig, run_dir: Path, export: Path, dist: DistInfo,
           verbose: bool) -> Iterator[None]:
    """Lock ``run_dir`` for this run (main rank), re-check it and remove stale temp files."""
    run_dir.mkdir(parents=True, exist_ok=True)  # every check passed: now write
    if not dist.is_main:
        yield
        return
    with exclusive_lock(run_dir / LOCK_NAME, _busy_message(run_dir)):
        _check_fresh(cfg, run_dir, export)  # a run may have started since the first check
        stale = remove_stale_temps(run_dir / "last.pt") + remove_stale_temps(export)
        if stale and verbose:
            print(f"removed {len(stale)} temporary file(s) of an interrupted save in "
                  f"{run_dir}", file=sys.stderr, flush=True)
        if cfg.resume and not (run_dir / "last.pt").exists() and (
                run_dir / "metrics.jsonl").exists() and verbose:
            print(f"{run_dir}: no last.pt to resume from; starting fresh (metrics.jsonl of "
                  "the unfinished start is cleared)", file=sys.stderr, flush=True)
        yield


def _load_data(cfg: TrainConfig, cutoff: float, source: Any, source_path: Path | None
               ) -> tuple[list[AtomicData], list[AtomicData], dict]:
    if source is None:
        source, source_path = dataset.open_source(cfg.data)
    where = str(source_path) if source_path is not None else "in-memory dataset"
    spec = SplitSpec(cfg.val_size, cfg.test_size, cfg.split_seed, cfg.train_size)
    split = spec.indices(len(source), where)
    need = {keys.FORCES: cfg.force_weight}  # absent stress labels are masked
    val_idx = split["val"][: cfg.max_val_structures] if cfg.max_val_structures else split["val"]
    train = dataset.prepare(source, split["train"], cutoff, need, where)
    val = dataset.prepare(source, val_idx, cutoff, {}, where)
    info = dataset.source_info(source, source_path)
    if info.get("dataset"):  # resolvable from any working directory
        info["dataset"] = str(Path(info["dataset"]).resolve())
    info["split"] = spec.to_dict()
    info["where"] = where
    return train, val, info


def _stress_term(cfg: TrainConfig, train: list[AtomicData], where: str, verbose: bool
                 ) -> TrainConfig:
    """``cfg`` with the stress term off when no training structure has a stress label
    (molecules, most non-periodic sets), said in one line."""
    if cfg.stress_weight <= 0 or any(bool(d[keys.HAS_STRESS]) for d in train):
        return cfg
    if verbose:
        print(f"{where}: no training structure has a stress label; stress term off "
              "(--stress-weight 0)", file=sys.stderr, flush=True)
    return dataclasses.replace(cfg, stress_weight=0.0)


def _resumed_config(cfg: TrainConfig, run_dir: Path, config: dict, verbose: bool) -> dict:
    """When resuming, the hyperparameters the run started with: a preset may resolve to
    others in a later version, and the run continues as it began."""
    last = run_dir / "last.pt"
    if not (cfg.resume and last.exists()):
        return config
    stored = load_state(last).get("hyperparameters")  # absent in earlier versions' states
    now = registry.stored_form(config)
    if stored is None or stored == now:
        return config
    if verbose:
        changed = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
        print(f"{last}: resuming with the run's own hyperparameters ({', '.join(changed)} "
              f"differ from what {cfg.model!r} gives now)", file=sys.stderr, flush=True)
    return stored


def _build_potential(cfg: TrainConfig, family: str, config: dict,
                     train: list[AtomicData], val: list[AtomicData]) -> Potential:
    species = sorted({int(z) for d in train + val for z in d[keys.ATOMIC_NUMBERS].tolist()})
    refs = fit_reference_energies(train, species)
    torch.manual_seed(cfg.seed)
    try:
        model = registry.build_model(family, config)
    except TypeError as exc:
        raise ConfigError(f"model {family!r}: bad hyperparameters ({exc})") from None
    return Potential(model, family, config, species, refs, scale=energy_scale(train, refs))


def _summary(trainer: Trainer, n_params: int, family: str, run_dir: Path) -> str:
    per_step = trainer.mean_step_flops()
    steps = trainer.scheduler.total_steps
    return (f"mlip-train: {family} with {n_params:,} parameters | N train "
            f"{len(trainer.train_items)}, N val {len(trainer.val_items)} | ~{per_step:.3g} "
            f"FLOP/step, {steps} steps (~{per_step * steps:.3g}"
            f" FLOP) | device {trainer.device} x{trainer.dist.world} | precision "
            f"{trainer.precision} | run dir {run_dir}")


def _progress(trainer: Trainer, enabled: bool) -> tuple[ProgressBar, Any]:
    bar = ProgressBar(trainer.scheduler.total_steps, trainer.step, "train", "steps", enabled)

    def update(record: dict) -> None:
        bar.advance()
        if record["step"] % 5 == 0 or record["step"] == 1:
            shown = {"loss": f"{record['loss']:.3g}", "lr": f"{record['lr']:.2e}",
                     "E": f"{record.get('energy_mae') or 0:.3g}",
                     "F": f"{record.get('force_mae') or 0:.3g}"}
            if trainer.last_val.get("force_mae") is not None:
                shown["valF"] = f"{trainer.last_val['force_mae']:.3g}"
            bar.show(shown)

    return bar, update


def training_budget(cfg: TrainConfig, trainer: Trainer) -> str:
    """What set the run's length: ``"patience"`` (stopped early), else what set its cosine
    schedule: ``"steps"`` (--max-steps), ``"flops"`` (--max-flops) or ``"epochs"``."""
    if trainer.early.stopped:
        return "patience"
    by_epochs = cfg.epochs * trainer.steps_per_epoch
    by_steps = min(by_epochs, cfg.max_steps) if cfg.max_steps is not None else by_epochs
    if cfg.max_flops is not None and trainer.total_steps() < by_steps:
        return "flops"
    return "steps" if by_steps < by_epochs or cfg.max_steps == by_epochs else "epochs"


def _train_record(cfg: TrainConfig, trainer: Trainer, n_params: int, info: dict) -> dict:
    return {
        "n_train_structures": len(trainer.train_items), "n_params": n_params,
        "flops": trainer.flops, "pf_days": pf_days(trainer.flops),
        "flops_matmul": trainer.flops_matmul, "flops_counting": FLOPS_COUNTING,
        "budget": training_budget(cfg, trainer),
        "epochs": trainer.step / trainer.steps_per_epoch, "steps": trainer.step,
        "skipped_steps": trainer.skipped, "lr": cfg.lr, "amp": trainer.precision,
        "batch_size": cfg.batch_size, "seed": cfg.seed, **info,
        "wall_time_s": trainer.wall_time + trainer._elapsed(), "device": str(trainer.device),
        "world_size": trainer.dist.world, **trainer.early.record(),
        **({"previous_dataset_hashes": trainer.previous_datasets}
           if trainer.previous_datasets else {}),
    }


def run_training(cfg: TrainConfig, source: Sequence | None = None,
                 source_path: Path | None = None, verbose: bool = True) -> dict[str, Any]:
    """Train as configured; returns ``{"export", "train", "metrics", "run_dir"}``.

    ``source``: an indexable dataset (``ase.Atoms`` or data dicts with labels); by default
    the file ``cfg.data`` (or the embedded dataset) is opened.
    """
    parent = finetune.load_parent(cfg.init_from) if cfg.init_from else None
    preset, family, config = (
        finetune.parent_model(cfg, parent) if parent
        else registry.resolve_model(cfg.model, cfg.params, cfg.model_config))
    n_params = registry.count_parameters(family, config)
    run_dir, export = run_paths(cfg, family, n_params)
    check_output_dir(run_dir, "--out")  # before any data work: a bad path fails at once
    check_output_file(export, "--export")
    _check_fresh(cfg, run_dir, export)
    _check_not_busy(run_dir)
    config = _resumed_config(cfg, run_dir, config, verbose)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist, device = init_distributed(cfg.device)
    try:
        train, val, info = _load_data(cfg, float(config["cutoff"]), source, source_path)
        cfg = _stress_term(cfg, train, info.pop("where"), verbose and dist.is_main)
        if parent is None:
            potential = _build_potential(cfg, family, config, train, val)
        else:
            potential = finetune.build_potential(cfg, parent, train, val, device,
                                                 str(cfg.data or "the dataset"),
                                                 verbose and dist.is_main)
            info["parent"] = parent.record()
        trainer = Trainer(cfg, potential, train, val, run_dir, dist, device,
                          dataset_hash=info.get("dataset_hash"))
        info["model"] = preset
        with _claim(cfg, run_dir, export, dist, verbose):
            return _run(cfg, trainer, n_params, family, run_dir, export, info, dist, verbose)
    finally:
        shutdown(dist)


def _run(cfg: TrainConfig, trainer: Trainer, n_params: int, family: str, run_dir: Path,
         export: Path, info: dict, dist: DistInfo, verbose: bool) -> dict[str, Any]:
    finished = trainer.prepare(cfg.resume)
    show = verbose and dist.is_main
    if show and trainer.amp_note:
        print(trainer.amp_note, file=sys.stderr, flush=True)
    if show:
        print(_summary(trainer, n_params, family, run_dir), file=sys.stderr, flush=True)
    if not finished:
        bar, update = _progress(trainer, show)
        with bar:
            trainer.fit(update)
    train = _train_record(cfg, trainer, n_params, info)
    potential, metrics = trainer.export_potential()
    _check_outcome(trainer, metrics, run_dir)
    if dist.is_main:
        save_potential(export, potential.cpu(), train=train, metrics=metrics)
        if show:
            if train["converged"] is not None:
                print(_convergence_line(train), file=sys.stderr, flush=True)
            print(f"exported {export} | val energy MAE {_fmt(metrics.get('energy_mae'))} eV/atom"
                  f", force MAE {_fmt(metrics.get('force_mae'))} eV/Å, stress MAE "
                  f"{_fmt(metrics.get('stress_mae'))} eV/Å^3 | {train['flops']:.3g} FLOP "
                  f"({train['pf_days']:.3g} PF-days), {train['wall_time_s']:.0f} s",
                  file=sys.stderr, flush=True)
    return {"export": export, "train": train, "metrics": metrics, "run_dir": run_dir}


def _convergence_line(train: dict) -> str:
    crit = train["stop_criterion"]
    state = ("converged" if train["converged"] else
             f"not converged (the budget ended {train['validations_since_best']} of "
             f"{crit['patience']} validations after the best)")
    return (f"early stopping: {state}; best validation loss {_fmt(train['best_val_loss'])} "
            f"at step {train['best_step']} (weights of that step exported)")


def _check_outcome(trainer: Trainer, metrics: dict, run_dir: Path) -> None:
    """Refuse to export a model that never trained or whose validation is not finite."""
    if trainer.step > 0 and trainer.skipped >= trainer.step:
        raise TrainingDiverged(f"{run_dir}: all {trainer.step} steps were skipped (loss or "
                               "gradient not finite): no model was exported; check the data "
                               "(mlip-data info --verify) or lower --lr")
    bad = [k for k, v in metrics.items()
           if k.endswith("mae") and v is not None and not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(f"{run_dir}: validation {bad[0]} is {metrics[bad[0]]}: no model "
                               "was exported; check the data (mlip-data info --verify)")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
