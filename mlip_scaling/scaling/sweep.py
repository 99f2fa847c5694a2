"""``mlip-scaling sweep``: a grid of trainings (models x data sizes x compute budgets).

Each run is one ``mlip-train`` call in ``OUT/<model>-n<N>[-c<FLOPs>]`` exporting
``<run>.pt`` there. Runs whose exported model exists are skipped; the others are started
with ``--resume`` (a fresh start when the run has no ``last.pt`` yet), so a sweep can be
re-run after an interruption. Locally the runs go one after another; ``--launcher slurm``
submits them as one submitit array job.

A plan file (YAML) holds the same keys as the flags::

    models: [transformer-1.2k, eqv2-5.6k]
    train_sizes: [100, 300, 1000]
    epochs: 30
    max_flops: [1e12]          # optional
    data: path/to/data.h5      # optional
    train_args: [--batch-size, "16"]
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlip_scaling.errors import ConfigError

__all__ = ["Run", "plan_runs", "is_finished", "configure", "run"]


@dataclass
class Run:
    """One training of the sweep: its name, run directory and mlip-train command."""

    name: str
    out: Path
    command: list[str] = field(default_factory=list)

    @property
    def export(self) -> Path:
        return self.out / f"{self.name}.pt"


def _floats(text: str | list | None, what: str) -> list[float]:
    if text is None or text == "":
        return []
    items = text if isinstance(text, list) else str(text).split(",")
    try:
        return [float(x) for x in items]
    except ValueError:
        raise ConfigError(f"{what}: expected numbers separated by commas, got {text!r}") from None


def _names(text: str | list | None) -> list[str]:
    items = text if isinstance(text, list) else str(text or "").split(",")
    return [str(x).strip() for x in items if str(x).strip()]


def plan_runs(out: str | Path, models: list[str], train_sizes: list[int], epochs: int,
              max_flops: list[float] | None = None, data: str | None = None,
              train_args: list[str] | None = None) -> list[Run]:
    """The grid models x train sizes x FLOP budgets as runs (commands of mlip-train)."""
    if not models or not train_sizes:
        raise ConfigError("a sweep needs at least one --models entry and one --train-sizes entry")
    runs = []
    for model, n, flops in itertools.product(models, train_sizes, max_flops or [None]):
        name = f"{model}-n{int(n)}" + (f"-c{flops:.0e}".replace("+", "") if flops else "")
        out_dir = Path(out) / name
        cmd = [sys.executable, "-m", "mlip_scaling.training.cli", "--model", model,
               "--train-size", str(int(n)), "--epochs", str(epochs), "--out", str(out_dir),
               "--resume", "--export", f"{name}.pt"]
        if flops:
            cmd += ["--max-flops", f"{flops:g}"]
        if data:
            cmd += ["--data", str(data)]
        runs.append(Run(name, out_dir, cmd + list(train_args or [])))
    return runs


def is_finished(run: Run) -> bool:
    """Whether the run's exported model exists and is a readable model file."""
    from mlip_scaling.checkpoint import CheckpointError, load_checkpoint

    if not run.export.is_file():
        return False
    try:
        load_checkpoint(run.export)
    except CheckpointError:
        return False
    return True


def _load_plan(path: str) -> dict:
    import yaml

    try:
        plan = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable plan file ({exc})") from None
    if not isinstance(plan, dict):
        raise ConfigError(f"{path}: a plan file is a YAML mapping (models, train_sizes, ...)")
    unknown = set(plan) - {"models", "train_sizes", "epochs", "max_flops", "data", "train_args",
                           "out"}
    if unknown:
        raise ConfigError(f"{path}: unknown plan keys {sorted(unknown)}")
    return plan


def _runs_from_args(args: argparse.Namespace) -> list[Run]:
    plan = _load_plan(args.plan) if args.plan else {}
    sizes = _floats(plan.get("train_sizes", args.train_sizes), "--train-sizes")
    if any(s < 1 or s != int(s) for s in sizes):
        raise ConfigError(f"--train-sizes: positive integers expected, got {sizes}")
    extra = plan.get("train_args", shlex.split(args.train_args or ""))
    return plan_runs(plan.get("out", args.out), _names(plan.get("models", args.models)),
                     [int(s) for s in sizes], int(plan.get("epochs", args.epochs)),
                     _floats(plan.get("max_flops", args.max_flops), "--max-flops"),
                     plan.get("data", args.data), [str(x) for x in extra])


def _run_local(runs: list[Run]) -> int:
    failed = []
    for k, r in enumerate(runs, 1):
        print(f"[{k}/{len(runs)}] {r.name}: {shlex.join(r.command)}", flush=True)
        if subprocess.run(r.command, check=False).returncode != 0:
            failed.append(r.name)
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)} (re-run the sweep to resume)")
    return 1 if failed else 0


def _run_command(command: list[str]) -> int:
    """Body of one Slurm array task."""
    return subprocess.run(command, check=True).returncode


def _submit_slurm(runs: list[Run], args: argparse.Namespace) -> int:
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install "
                          "'mlip-scaling[slurm]'") from None
    executor = submitit.AutoExecutor(folder=Path(args.out) / "slurm" / "%j")
    params = {"timeout_min": args.slurm_time, "slurm_array_parallelism": args.slurm_parallel,
              "gpus_per_node": args.gpus, "cpus_per_task": args.cpus}
    if args.slurm_partition:
        params["slurm_partition"] = args.slurm_partition
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(_run_command, r.command) for r in runs]
    print(f"submitted {len(jobs)} runs as a Slurm array job"
          + (f" ({jobs[0].job_id.split('_')[0]})" if jobs else ""))
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlip-scaling sweep``."""
    parser.add_argument("--models", default="transformer-1.2k,transformer-7.0k",
                        help="comma-separated presets or families (their default preset)")
    parser.add_argument("--train-sizes", default="100,300,1000",
                        help="comma-separated numbers of training structures")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run")
    parser.add_argument("--max-flops", default=None, help="comma-separated FLOP budgets (one "
                        "run per budget)")
    parser.add_argument("--data", default=None, help="dataset (default: the embedded one)")
    parser.add_argument("--out", default="sweep", help="sweep folder (one sub-folder per run)")
    parser.add_argument("--plan", default=None, help="YAML plan file (overrides the flags)")
    parser.add_argument("--train-args", default="", help="extra mlip-train arguments, quoted, "
                        "e.g. \"--batch-size 16 --lr 1e-3\"")
    parser.add_argument("--launcher", choices=["local", "slurm"], default="local")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    slurm = parser.add_argument_group("slurm (with --launcher slurm)")
    slurm.add_argument("--slurm-partition", default=None)
    slurm.add_argument("--slurm-time", type=int, default=240, help="minutes per run")
    slurm.add_argument("--slurm-parallel", type=int, default=16, help="runs at the same time")
    slurm.add_argument("--gpus", type=int, default=1, help="GPUs per run")
    slurm.add_argument("--cpus", type=int, default=8, help="CPU cores per run")


def run(args: argparse.Namespace) -> int:
    """Run ``mlip-scaling sweep``."""
    runs = _runs_from_args(args)
    todo = [r for r in runs if not is_finished(r)]
    for r in runs:
        state = "todo" if r in todo else "done"
        if args.dry_run:
            print(f"{state}  {r.name}  {shlex.join(r.command)}")
    print(f"{len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to run")
    if args.dry_run or not todo:
        return 0
    return _submit_slurm(todo, args) if args.launcher == "slurm" else _run_local(todo)
