"""The training loop: AdamW, cosine schedule, clipping, EMA, AMP, validation, resumable state."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mlip_scaling import keys
from mlip_scaling.accuracy import (
    SUM_NAMES,
    LossWeights,
    add_sums,
    error_sums,
    finish_metrics,
    loss_from_sums,
)
from mlip_scaling.data import sampling
from mlip_scaling.data.atomic_data import AtomicData, collate, to_device
from mlip_scaling.errors import ConfigError, MlipError
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import stored_form
from mlip_scaling.train_config import steps_of
from mlip_scaling.training.config import TrainConfig
from mlip_scaling.training.distributed import DistInfo, all_reduce_sum
from mlip_scaling.training.early_stop import EarlyStopping
from mlip_scaling.training.ema import EMA
from mlip_scaling.training.flops import FlopModel, batch_features
from mlip_scaling.training.logger import MetricsLogger
from mlip_scaling.training.loss import loss_terms, total_loss
from mlip_scaling.training.precision import (
    CPU_CANDIDATES,
    PRECISION_NAMES,
    autocast,
    choose_cpu_precision,
    cpu_has_bf16,
    probe_clock,
    resolve_amp,
    time_precisions,
)
from mlip_scaling.training.schedule import CosineWarmup, warmup_steps
from mlip_scaling.training.state import (
    capture_rng,
    check_resumable,
    datasets_before,
    load_state,
    restore_rng,
    save_state,
)

__all__ = ["Trainer", "TrainingDiverged"]


class TrainingDiverged(MlipError):
    """The weights became non-finite (no checkpoint is written)."""


class Trainer:
    """Trains ``potential`` on prepared structures; state lives in ``run_dir/last.pt``."""

    def __init__(self, cfg: TrainConfig, potential: Potential, train: list[AtomicData],
                 val: list[AtomicData], run_dir: Path, dist: DistInfo,
                 device: torch.device, dataset_hash: str | None = None) -> None:
        self.cfg, self.dist, self.device, self.run_dir = cfg, dist, device, Path(run_dir)
        self.dataset_hash = dataset_hash  # content hash of the training data
        self.previous_datasets: list[str] = []  # hashes trained on before (--allow-data-change)
        self.train_items, self.val_items = train, val
        self.potential = potential.to(device=device, dtype=torch.float32)
        self.precision = resolve_amp(cfg.amp, device)
        self.amp_note: str | None = None  # what --amp auto chose and why (one line)
        self.weights = LossWeights(cfg.energy_weight, cfg.force_weight, cfg.stress_weight)
        self.need_forces = cfg.force_weight > 0 or cfg.stress_weight > 0
        self.need_stress = cfg.stress_weight > 0
        if cfg.batch_size % dist.world:
            raise ConfigError(f"--batch-size {cfg.batch_size} is not divisible by the "
                              f"{dist.world} processes")
        self.local_batch = cfg.batch_size // dist.world
        self.steps_per_epoch = sampling.batches_per_epoch(len(train), self.local_batch, dist.world)
        self._build_model()
        self.optimizer = torch.optim.AdamW(self.potential.model.parameters(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.ema = EMA(self.potential, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.step = self.epoch = self.batch_in_epoch = self.skipped = 0
        self.flops, self.wall_time, self.last_val = 0.0, 0.0, {}
        self.flop_model: FlopModel | None = None  # total FLOP (matmul + elementwise)
        self.flop_model_matmul: FlopModel | None = None
        self.flops_matmul = 0.0
        self.scheduler: CosineWarmup | None = None
        self.early = EarlyStopping(cfg.patience, cfg.min_delta, cfg.val_every)
        self.val_step: int | None = None  # step of the last validation
        self.logger = MetricsLogger(self.run_dir, enabled=dist.is_main)

    # ---------------------------------------------------------------- setup
    def _build_model(self) -> None:
        if self.cfg.compile and self.need_forces and not self.potential.direct_forces:
            raise ConfigError("--compile: torch.compile cannot differentiate twice, which "
                              "training on conservative forces/stress needs")
        self.forward_model: Callable = self.potential
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.potential, device_ids=ids)

    def _choose_amp(self) -> None:
        """``--amp auto``: pick the precision (timed on a CPU with bf16) and say why."""
        if self.cfg.amp != "auto":
            return
        if self.device.type == "cuda":
            why = ("the GPU supports bf16" if self.precision == "bf16"
                   else "the GPU has no bf16; with a GradScaler")
        elif not cpu_has_bf16():
            why = "the CPU has no native bf16 instructions: emulated bf16 is slower"
        else:
            picks = list(range(min(self.local_batch, len(self.train_items))))
            batch = self._batch(picks)
            seconds = time_precisions(lambda precision: self._probe(precision, batch),
                                      clock=probe_clock())
            pooled = all_reduce_sum(torch.tensor([seconds[p] for p in CPU_CANDIDATES],
                                                 dtype=torch.float64), self.dist)
            mean = (pooled / self.dist.world).tolist()  # every rank takes the same choice
            self.precision, why = choose_cpu_precision(dict(zip(CPU_CANDIDATES, mean)))
        self.amp_note = f"--amp auto: {PRECISION_NAMES[self.precision]} ({why})"
        self.logger.event("amp", precision=self.precision, reason=why)

    def _probe(self, precision: str, batch: AtomicData) -> None:
        """Forward + backward at ``precision``; the gradients are dropped, weights untouched."""
        chosen, self.precision = self.precision, precision
        try:
            loss, _, _ = self._loss(batch, self.potential)
            loss.backward()
        finally:
            self.precision = chosen
            self.optimizer.zero_grad(set_to_none=True)

    def mean_step_flops(self) -> float:
        """Predicted FLOPs of one global step on a batch of average composition."""
        feats = np.mean([[len(d[keys.ATOMIC_NUMBERS]), d[keys.EDGE_INDEX].shape[1],
                          len(d[keys.ATOMIC_NUMBERS]) ** 2] for d in self.train_items], axis=0)
        per_rank = self.flop_model.predict(feats * self.local_batch)
        return per_rank * self.dist.world

    def total_steps(self) -> int:
        """Steps of the run: epochs, capped by --max-steps and the --max-flops estimate."""
        steps = self.cfg.epochs * self.steps_per_epoch
        if self.cfg.max_steps is not None:
            steps = min(steps, self.cfg.max_steps)
        if self.cfg.max_flops is not None:
            steps = min(steps, max(1, math.ceil(self.cfg.max_flops / self.mean_step_flops())))
        return steps

    def _measure_flops(self) -> None:
        picks = sampling.sample_batches(len(self.train_items), self.local_batch, self.cfg.seed)
        batches = [self._batch(p) for p in picks]
        self.flop_model, self.flop_model_matmul, _ = FlopModel.measure(self._flop_probe,
                                                                       batches)
        self.optimizer.zero_grad(set_to_none=True)

    def _flop_probe(self, batch: AtomicData) -> None:
        loss, _, _ = self._loss(batch, self.potential)
        loss.backward()

    def _make_scheduler(self) -> None:
        total = self.total_steps()
        self.scheduler = CosineWarmup(self.optimizer, self.cfg.lr, total,
                                      warmup_steps(self.cfg.warmup, total),
                                      self.cfg.min_lr_factor)
        self.early.min_step = steps_of(self.cfg.min_steps, total)

    # ---------------------------------------------------------------- one step
    def _batch(self, positions: list[int], items: list[AtomicData] | None = None) -> AtomicData:
        items = self.train_items if items is None else items
        return collate([items[i] for i in positions], device=self.device)

    def _loss(self, batch: AtomicData, model: Callable) -> tuple[torch.Tensor, dict, dict]:
        with autocast(self.precision, self.device):
            # create_graph also keeps the energy's graph when no forces are trained on
            pred = model(batch, compute_forces=self.need_forces,
                         compute_stress=self.need_stress, create_graph=True)
        terms = loss_terms(pred, batch)
        return total_loss(terms, self.weights), terms, pred

    def train_step(self, batch: AtomicData) -> dict[str, float]:
        """One optimizer step (or a logged skip when the loss/gradient is not finite)."""
        self.potential.train()
        loss, terms, pred = self._loss(batch, self.forward_model)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.cfg.clip_grad if self.cfg.clip_grad > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.potential.model.parameters(), clip)
        feats = batch_features(batch)
        local = [self.flop_model.predict(feats), self.flop_model_matmul.predict(feats),
                 float(not (torch.isfinite(loss) and torch.isfinite(norm)))]
        flops, matmul, bad = all_reduce_sum(torch.tensor(local, dtype=torch.float64),
                                            self.dist).tolist()
        self.flops += flops
        self.flops_matmul += matmul
        if bad:
            self._skip(float(loss.detach()), float(norm))
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.potential)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        sums = error_sums(pred, batch)
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()},
                **{k: v for k, v in finish_metrics(sums).items() if k.endswith("mae")}}

    def _skip(self, loss: float, norm: float) -> None:
        self.skipped += 1
        if self.scaler.is_enabled():
            self.scaler.update(self.scaler.get_scale() * 0.5)
        self.logger.event("skipped_step", step=self.step, loss=loss, grad_norm=norm,
                          scale=self.scaler.get_scale() if self.scaler.is_enabled() else None)

    # ---------------------------------------------------------------- validation
    def eval_potential(self) -> Potential:
        """A copy of the potential with the EMA weights (or the current ones)."""
        model = copy.deepcopy(self.potential)
        if self.ema is not None:
            self.ema.copy_to(model)
        return model.eval()

    def validate(self, potential: Potential | None = None) -> dict[str, float | None]:
        """Loss and MAE/RMSE on the validation set (shared over ranks), float32, no AMP."""
        potential = self.eval_potential() if potential is None else potential
        mine = list(range(self.dist.rank, len(self.val_items), self.dist.world))
        sums: dict[str, float] = {}
        for k in range(0, len(mine), self.local_batch):
            batch = self._batch(mine[k:k + self.local_batch], self.val_items)
            pred = potential(batch, compute_forces=self.need_forces,
                             compute_stress=self.need_stress)
            add_sums(sums, error_sums(pred, batch))
        pooled = all_reduce_sum(torch.tensor([sums.get(n, 0.0) for n in SUM_NAMES],
                                             dtype=torch.float64), self.dist).tolist()
        sums = dict(zip(SUM_NAMES, pooled))
        return {"loss": loss_from_sums(sums, self.weights), **finish_metrics(sums)}

    # ---------------------------------------------------------------- state
    def state_dict(self, finished: bool = False) -> dict[str, Any]:
        for name, value in self.potential.state_dict().items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise TrainingDiverged(f"weights {name} are not finite; last.pt was not written")
        return {
            "config": self.cfg.to_dict(), "potential": self.potential.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": capture_rng(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "skipped": self.skipped, "flops": self.flops,
            "flop_model": self.flop_model.state_dict(), "flops_matmul": self.flops_matmul,
            "flop_model_matmul": self.flop_model_matmul.state_dict(),
            "wall_time": self.wall_time + self._elapsed(), "last_val": self.last_val,
            "metrics_bytes": self.logger.size(), "finished": finished,
            "dataset_hash": self.dataset_hash, "previous_datasets": self.previous_datasets,
            "precision": self.precision, "hyperparameters": stored_form(self.potential.config),
            "early_stop": self.early.state_dict(), "val_step": self.val_step,
        }

    def save(self, finished: bool = False) -> None:
        state = self.state_dict(finished)
        if self.dist.is_main:
            save_state(state, self.run_dir / "last.pt")

    def load(self, path: Path) -> bool:
        """Restore everything from ``path``; returns whether there is nothing left to train."""
        state = load_state(path)
        check_resumable(path, state, self.cfg.to_dict(), stored_form(self.potential.config))
        self.previous_datasets = datasets_before(path, state, self.dataset_hash,
                                                 self.cfg.allow_data_change)
        self.potential.load_state_dict(state["potential"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.flop_model = FlopModel.from_state(state["flop_model"])
        self.flop_model_matmul = FlopModel.from_state(state.get("flop_model_matmul",
                                                                state["flop_model"]))
        self.flops_matmul = float(state.get("flops_matmul", state["flops"]))
        self._make_scheduler()
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch, self.skipped = int(state["batch_in_epoch"]), int(state["skipped"])
        self.flops, self.wall_time = float(state["flops"]), float(state["wall_time"])
        self.last_val = dict(state["last_val"])
        self.early.load_state_dict(state.get("early_stop"))
        self.val_step = state.get("val_step")
        if self.cfg.amp == "auto" and self.device.type == "cpu" and (
                state.get("precision") in CPU_CANDIDATES):
            self.precision = state["precision"]  # the choice timed when the run started
            self.amp_note = f"--amp auto: {PRECISION_NAMES[self.precision]} (chosen at the start)"
        self.logger.truncate(int(state["metrics_bytes"]))
        more = not self._done()
        return bool(state["finished"]) and not more  # a larger budget continues the run

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0.0

    # ---------------------------------------------------------------- loop
    def prepare(self, resume: bool) -> bool:
        """Fresh start (FLOP model measured) or resume; returns whether already finished."""
        last = self.run_dir / "last.pt"
        if resume and last.exists():
            finished = self.load(last)
        else:
            self.logger.truncate(0)  # a fresh start never appends to an unfinished start's log
            self._choose_amp()
            self._measure_flops()
            self._make_scheduler()
            finished = False
        if self.cfg.compile:
            # only now: a first call under the FLOP counter's dispatch mode would make
            # torch.compile skip the model's code for the rest of the process
            self.potential.model.compile()
        return finished

    def fit(self, progress: Callable[[dict], None] | None = None) -> None:
        """Train until the step/epoch/FLOP budget is spent, saving ``last.pt`` on the way."""
        self._t0 = time.perf_counter()
        while not self._done():
            batches = sampling.epoch_batches(len(self.train_items), self.local_batch, self.epoch,
                                          self.cfg.seed, self.dist.rank, self.dist.world)
            start = self.batch_in_epoch
            for k, batch in enumerate(self._loader(batches[start:]), start=start):
                if self._done():
                    break
                record = self.train_step(to_device(batch, self.device))
                self.step, self.batch_in_epoch = self.step + 1, k + 1
                self._after_step(record, progress)
            else:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                if self.cfg.val_every == 0:
                    self._validate_and_log()
        if self.val_step != self.step or not self.last_val:
            self._validate_and_log()
        self.save(finished=True)

    def _loader(self, batches: list[list[int]]) -> Iterable[AtomicData]:
        """Collated batches in this order (collated by ``--workers`` processes when > 0)."""
        if self.cfg.workers == 0:
            return (collate([self.train_items[i] for i in b]) for b in batches)
        return DataLoader(self.train_items, batch_sampler=batches, collate_fn=collate,
                          num_workers=self.cfg.workers)

    def _done(self) -> bool:
        """Budget spent (steps, FLOPs) or stopped early."""
        return (self.step >= self.scheduler.total_steps or self._flops_spent()
                or self.early.stopped)

    def _flops_spent(self) -> bool:
        return self.cfg.max_flops is not None and self.flops >= self.cfg.max_flops

    def _after_step(self, record: dict, progress: Callable[[dict], None] | None) -> None:
        record.update(step=self.step, epoch=self.step / self.steps_per_epoch,
                      lr=self.scheduler.lr(), flops=self.flops)
        if progress is not None:
            progress(record)
        if self.step % 10 == 0 or self.step == 1:
            self.logger.log("train", record)
        if self.cfg.val_every and self.step % self.cfg.val_every == 0:
            self._validate_and_log()
        if self.step % self.cfg.save_every == 0:
            self.save()

    def _validate_and_log(self) -> None:
        potential = self.eval_potential()
        self.last_val, self.val_step = self.validate(potential), self.step
        improved = self.early.update(self.step, self.last_val, potential.state_dict())
        self.logger.log("val", {"step": self.step, "epoch": self.step / self.steps_per_epoch,
                                "flops": self.flops, **self.last_val, "improved": improved})
        if self.early.stopped:
            self.logger.event("early_stop", step=self.step, best_step=self.early.best_step,
                              best_loss=self.early.best_loss)

    def export_potential(self) -> tuple[Potential, dict[str, Any]]:
        """(potential to export, its validation metrics): with ``--patience`` the
        best-validation weights and metrics, else the evaluated weights and the last ones."""
        potential = self.eval_potential()
        if self.early.active and self.early.best_weights is not None:
            potential.load_state_dict(self.early.best_weights)
            return potential, dict(self.early.best_metrics)
        return potential, dict(self.last_val)
