"""bf16 autocast vs float32: training-step time and result, side by side, on this machine.

    python benchmarks/bench_amp.py                               # transformer-2.3k, CPU
    python benchmarks/bench_amp.py --model transformer-18k --steps 20 --threads 1
    python benchmarks/bench_amp.py --device cuda --model eqv2-57k

Both precisions train the same seeded model on the same batches of the embedded dataset
with the trainer's own step (forward under autocast, conservative forces and stress by
autograd, backward, AdamW, EMA). The steps are interleaved (float32, bf16, float32, ...) so
that load from other processes hits both alike; the table gives the median step time, the
ratio bf16 / float32 (> 1: bf16 is slower) and the validation loss after the steps.
``mlip-train --amp`` (auto) makes the same comparison on a CPU in its first steps.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mlip_scaling import keys
from mlip_scaling.data import dataset
from mlip_scaling.data.atomic_data import collate
from mlip_scaling.models import registry
from mlip_scaling.models.potential import Potential
from mlip_scaling.training.config import TrainConfig
from mlip_scaling.training.distributed import DistInfo
from mlip_scaling.training.normalization import energy_scale, fit_reference_energies
from mlip_scaling.training.precision import cpu_has_bf16
from mlip_scaling.training.trainer import Trainer

PRECISIONS = ("off", "bf16")
LABEL = {"off": "float32", "bf16": "bf16 autocast"}


def _items(family_config: tuple[str, dict], n: int) -> list:
    source, path = dataset.open_source(None)
    need = {keys.FORCES: 20.0, keys.STRESS: 5.0}
    return dataset.prepare(source, range(n), float(family_config[1]["cutoff"]), need, str(path))


def _trainer(args: argparse.Namespace, precision: str, items: list, run_dir: Path) -> Trainer:
    family, config = registry.get_preset(args.model)
    train, val = items[: -args.val], items[-args.val:]
    species = sorted({int(z) for d in items for z in d[keys.ATOMIC_NUMBERS].tolist()})
    refs = fit_reference_energies(train, species)
    torch.manual_seed(0)
    model = registry.build_model(family, config)
    potential = Potential(model, family, config, species, refs, scale=energy_scale(train, refs))
    cfg = TrainConfig(model=args.model, amp=precision, batch_size=args.batch_size,
                      epochs=1000, save_every=10**6).validate()
    trainer = Trainer(cfg, potential, train, val, run_dir, DistInfo(), torch.device(args.device))
    trainer.prepare(resume=False)
    return trainer


def _step(trainer: Trainer, batch: dict) -> float:
    start = time.perf_counter()
    trainer.train_step(batch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="transformer-2.3k", help="preset name")
    parser.add_argument("--batch-size", type=int, default=64, help="structures per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per precision")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per precision")
    parser.add_argument("--val", type=int, default=64, help="validation structures")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_batches = args.warmup + args.steps
    items = _items(registry.get_preset(args.model), args.batch_size * n_batches + args.val)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {p: _trainer(args, p, items, Path(tmp) / p) for p in PRECISIONS}
        times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for k in range(n_batches):
            positions = list(range(k * args.batch_size, (k + 1) * args.batch_size))
            for precision, trainer in trainers.items():
                batch = collate([trainer.train_items[i] for i in positions], trainer.device)
                seconds = _step(trainer, batch)
                if k >= args.warmup:
                    times[precision].append(seconds)
        results = {p: trainers[p].validate() for p in PRECISIONS}
    median = {p: statistics.median(times[p]) for p in PRECISIONS}
    print(f"{args.model} ({registry.count_parameters(*registry.get_preset(args.model)):,} "
          f"parameters), batch {args.batch_size}, {args.steps} timed steps, device "
          f"{args.device}, {torch.get_num_threads()} threads, native CPU bf16: {cpu_has_bf16()}")
    print(f"{'precision':<15}{'median step (ms)':>18}{'min (ms)':>10}{'val loss':>10}"
          f"{'val F MAE':>11}")
    for p in PRECISIONS:
        print(f"{LABEL[p]:<15}{1e3 * median[p]:>18.1f}{1e3 * min(times[p]):>10.1f}"
              f"{results[p]['loss']:>10.4f}{results[p]['force_mae']:>11.4f}")
    print(f"bf16 / float32 step time: {median['bf16'] / median['off']:.2f}")


if __name__ == "__main__":
    main()
