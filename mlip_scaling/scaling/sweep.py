"""``mlip-scaling sweep``: a grid of trainings (models x data sizes x compute budgets).

Each run is one ``mlip-train`` call in ``OUT/<model>-n<N>[-c<FLOPs>]`` exporting ``<run>.pt``
there. Runs whose exported model exists are skipped; the others start with ``--resume``
(fresh when there is no ``last.pt``), so an interrupted sweep is resumed by re-running it.
Locally the runs go one after another (``--jobs N``: N at a time); ``--launcher slurm``
submits one submitit array job.
Arguments after ``--`` go to every mlip-train call::

    mlip-scaling sweep --models transformer-1.2k,eqv2-5.6k --train-sizes 100,300 -- --lr 1e-3

A YAML plan file (``--plan``) holds the same keys: models, train_sizes, fixed_steps or
epochs, max_flops, data, seed, out, train_args (a list of mlip-train arguments).

Training length: ``--fixed-steps S`` (the default, S = 500) gives every run exactly S
optimiser steps with the cosine schedule spanning those S steps, whatever its data size, so
the data axis varies data only (mlip-train gets ``--max-steps S --epochs S``: an epoch has
at least one step, so the epoch cap never binds). ``--epochs E`` instead trains E passes
over each training set (more steps for larger sets); the checkpoint's ``train.budget``
records which ("steps", "epochs" or "flops").
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mlip_scaling.cli_args import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, SEED, check_output_dir
from mlip_scaling.errors import ConfigError
from mlip_scaling.procs import preexec_die_with_parent

__all__ = ["Run", "plan_runs", "is_finished", "configure", "run"]

PLAN_KEYS = {"models", "train_sizes", "epochs", "fixed_steps", "max_flops", "data", "seed",
             "train_args", "out"}
DEFAULT_FIXED_STEPS = 500


@dataclass
class Run:
    """One training of the sweep: its name, run directory and mlip-train command."""

    name: str
    out: Path
    command: list[str] = field(default_factory=list)

    @property
    def export(self) -> Path:
        return self.out / f"{self.name}.pt"


def _items(value: str | list | None) -> list[str]:
    """Unique entries of a comma-separated string or a list, as stripped text."""
    items = value if isinstance(value, list) else str(value if value is not None else "").split(",")
    return list(dict.fromkeys(str(x).strip() for x in items if str(x).strip()))


def plan_runs(out: str | Path, models: list[str], train_sizes: list[int], epochs: int | None,
              max_flops: list[float] | None = None, data: str | None = None,
              train_args: list[str] | None = None, seed: int | None = None,
              fixed_steps: int | None = None) -> list[Run]:
    """The grid models x train sizes x FLOP budgets as runs (commands of mlip-train).

    Each run trains ``fixed_steps`` optimiser steps, or ``epochs`` passes when
    ``fixed_steps`` is None (exactly one of the two is given).
    """
    if not models or not train_sizes:
        raise ConfigError("a sweep needs at least one --models entry and one --train-sizes entry")
    if (epochs is None) == (fixed_steps is None):
        raise ConfigError("a sweep trains either --fixed-steps S or --epochs E (give one)")
    length = (["--epochs", str(epochs)] if fixed_steps is None else
              ["--epochs", str(fixed_steps), "--max-steps", str(fixed_steps)])
    runs = []
    for model, n, flops in itertools.product(models, train_sizes, max_flops or [None]):
        name = f"{model}-n{int(n)}" + (f"-c{flops:.3g}".replace("+", "") if flops else "")
        out_dir = Path(out) / name
        cmd = [sys.executable, "-m", "mlip_scaling.training.cli", "--model", model,
               "--train-size", str(int(n)), *length, "--out", str(out_dir),
               "--resume", "--export", f"{name}.pt"]
        cmd += ["--max-flops", f"{flops:g}"] if flops else []
        cmd += ["--data", str(data)] if data else []
        cmd += ["--seed", str(int(seed))] if seed is not None else []
        runs.append(Run(name, out_dir, cmd + list(train_args or [])))
    return runs


def is_finished(run: Run) -> bool:
    """Whether the run's exported model exists and is a readable model file."""
    from mlip_scaling.checkpoint import CheckpointError, load_checkpoint

    try:
        return run.export.is_file() and bool(load_checkpoint(run.export))
    except CheckpointError:
        return False


def _load_plan(path: str) -> dict:
    import yaml

    try:
        plan = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable plan file ({' '.join(str(exc).split())})") from None
    if not isinstance(plan, dict):
        raise ConfigError(f"{path}: a plan file is a YAML mapping (models, train_sizes, ...)")
    if set(plan) - PLAN_KEYS:
        raise ConfigError(f"{path}: unknown plan keys {sorted(set(plan) - PLAN_KEYS)}")
    return plan


def _runs_from_args(args: argparse.Namespace) -> list[Run]:
    plan = _load_plan(args.plan) if args.plan else {}
    sizes = list(dict.fromkeys(POSITIVE_INT.value("--train-sizes", s)
                               for s in _items(plan.get("train_sizes", args.train_sizes))))
    budgets = list(dict.fromkeys(POSITIVE.value("--max-flops", f)
                                 for f in _items(plan.get("max_flops", args.max_flops))))
    extra = [str(x) for x in plan.get("train_args", shlex.split(args.train_args or ""))]
    seed = plan.get("seed", args.seed)
    epochs, steps = _length(plan, args)
    seed = None if seed is None else SEED.value("--seed", seed)
    out = plan.get("out", args.out)
    if not args.dry_run:
        check_output_dir(out, "--out")
    runs = plan_runs(out, _items(plan.get("models", args.models)),
                     sizes, epochs, budgets, plan.get("data", args.data),
                     extra + list(args.forward), seed, steps)
    _check_commands(runs)
    return runs


def _length(plan: dict, args: argparse.Namespace) -> tuple[int | None, int | None]:
    """(epochs, fixed steps) of the sweep: one of them, fixed steps by default."""
    epochs = plan.get("epochs", args.epochs)
    steps = plan.get("fixed_steps", args.fixed_steps)
    if epochs is not None and steps is not None:
        raise ConfigError("give either fixed_steps (--fixed-steps) or epochs (--epochs), "
                          "not both")
    if epochs is None and steps is None:
        steps = DEFAULT_FIXED_STEPS
    epochs = None if epochs is None else POSITIVE_INT.value("--epochs", epochs)
    steps = None if steps is None else POSITIVE_INT.value("--fixed-steps", steps)
    return epochs, steps


def _check_commands(runs: list[Run]) -> None:
    """Check every command with mlip-train's parser and model lookup before training."""
    from mlip_scaling.training.cli import parse_config
    from mlip_scaling.training.runner import resolve_model

    for r in runs:
        try:
            cfg = parse_config(r.command[3:])
        except ConfigError as exc:
            raise ConfigError(f"mlip-train rejects the arguments of run {r.name}: {exc}") from None
        resolve_model(cfg)


def _run_local(runs: list[Run], jobs: int = 1, quiet: bool = False) -> int:
    """Run the trainings here, ``jobs`` at a time (each run's output -> ``train.log`` then,
    and with ``quiet``).

    The trainings die with this process: by the parent-death signal when it is killed,
    and by SIGTERM here when it is stopped or fails.
    """
    active: list[tuple[Run, subprocess.Popen, float, int]] = []
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_exit) if main else None
    try:
        return _schedule(runs, jobs, active, log=jobs > 1 or quiet)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        _stop(proc for _, proc, _, _ in active)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _stop(procs: Iterable[subprocess.Popen]) -> None:
    """Terminate still-running trainings (and wait for them)."""
    for proc in [p for p in procs if p.poll() is None]:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _schedule(runs: list[Run], jobs: int, active: list, log: bool = False) -> int:
    """Start and reap the runs, ``jobs`` at a time (``active``: the running ones)."""
    failed: list[str] = []
    queue = list(reversed(runs)) if jobs > 1 else list(runs)  # largest (last in grid) first
    started = 0
    while queue or active:
        while queue and len(active) < jobs:
            r = queue.pop(0)
            started += 1
            print(f"[{started}/{len(runs)}] {r.name}: {shlex.join(r.command)}", flush=True)
            active.append((r, _start(r, log=log), time.perf_counter(), started))
        time.sleep(0.2)
        for item in [a for a in active if a[1].poll() is not None]:
            active.remove(item)
            r, proc, start, k = item
            code = proc.returncode
            failed += [r.name] if code else []
            state = f"FAILED (exit {code})" if code else f"done -> {r.export}"
            print(f"[{k}/{len(runs)}] {r.name}: {state} after "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    print(f"{len(failed)} run(s) failed: {', '.join(failed)} (re-run the sweep to resume)"
          if failed else f"all {len(runs)} runs done")
    return 1 if failed else 0


def _start(r: Run, log: bool) -> subprocess.Popen:
    """Start one mlip-train process (it dies with this one); with ``log`` its output is
    appended to ``train.log``."""
    if not log:
        return subprocess.Popen(r.command, preexec_fn=preexec_die_with_parent())
    r.out.mkdir(parents=True, exist_ok=True)
    with open(r.out / "train.log", "ab") as fh:
        return subprocess.Popen(r.command, stdout=fh, stderr=subprocess.STDOUT,
                                preexec_fn=preexec_die_with_parent())


def _run_command(command: list[str]) -> int:
    """Body of one Slurm array task."""
    return subprocess.run(command, check=True).returncode


def _with_torchrun(command: list[str], gpus: int) -> list[str]:
    """The mlip-train command under ``torchrun`` with one process per GPU (DDP)."""
    if gpus <= 1:
        return command
    return [command[0], "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(gpus), *command[1:]]


def _submit_slurm(runs: list[Run], args: argparse.Namespace) -> int:
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install "
                          "'mlip-scaling[slurm]'") from None
    executor = submitit.AutoExecutor(folder=Path(args.out) / "slurm" / "%j")
    partition = {"slurm_partition": args.slurm_partition} if args.slurm_partition else {}
    executor.update_parameters(timeout_min=args.slurm_time, gpus_per_node=args.gpus,
                               slurm_array_parallelism=args.slurm_parallel,
                               cpus_per_task=args.cpus, **partition)
    with executor.batch():
        jobs = [executor.submit(_run_command, _with_torchrun(r.command, args.gpus)) for r in runs]
    print(f"submitted {len(jobs)} runs as Slurm array job {jobs[0].job_id.split('_')[0]}")
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlip-scaling sweep``."""
    parser.add_argument("--models", default="transformer-1.2k,transformer-7.0k",
                        help="comma-separated presets or families (their default preset)")
    parser.add_argument("--train-sizes", default="100,300,1000",
                        help="comma-separated numbers of training structures")
    parser.add_argument("--fixed-steps", type=POSITIVE_INT, default=None,
                        help="optimiser steps of every run, whatever its data size (the "
                        f"schedule spans exactly these; default {DEFAULT_FIXED_STEPS} unless "
                        "--epochs is given)")
    parser.add_argument("--epochs", type=POSITIVE_INT, default=None,
                        help="epochs per run instead of fixed steps (larger training sets "
                        "then train for more steps)")
    parser.add_argument("--max-flops", default=None, help="comma-separated FLOP budgets (one "
                        "run per budget)")
    parser.add_argument("--data", default=None, help="dataset (default: the embedded one)")
    parser.add_argument("--seed", type=SEED, default=None, help="seed of every run "
                        "(default: mlip-train's)")
    parser.add_argument("--out", default="sweep", help="sweep folder (one sub-folder per run)")
    parser.add_argument("--plan", default=None, help="YAML plan file (overrides the flags)")
    parser.add_argument("--train-args", default="", help="extra mlip-train arguments, quoted, "
                        "e.g. \"--batch-size 16 --lr 1e-3\" (or give them after --)")
    parser.add_argument("--launcher", choices=["local", "slurm"], default="local",
                        help="where the runs go: this machine, or a Slurm array (submitit)")
    parser.add_argument("--jobs", type=POSITIVE_INT, default=1, help="local runs at the same time "
                        "(each gets its own process; give each --threads cores/jobs)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("forward", nargs="*", metavar="-- MLIP_TRAIN_ARGS",
                        help="arguments after -- are passed to every mlip-train call")
    slurm = parser.add_argument_group("slurm (with --launcher slurm)")
    slurm.add_argument("--slurm-partition", default=None,
                       help="Slurm partition (default: the cluster's default partition)")
    slurm.add_argument("--slurm-time", type=POSITIVE_INT, default=240, help="minutes per run")
    slurm.add_argument("--slurm-parallel", type=POSITIVE_INT, default=16,
                       help="runs at the same time")
    slurm.add_argument("--gpus", type=NON_NEGATIVE_INT, default=1,
                       help="GPUs per run (> 1: torchrun DDP; 0: CPU nodes)")
    slurm.add_argument("--cpus", type=POSITIVE_INT, default=8, help="CPU cores per run")


def run(args: argparse.Namespace) -> int:
    """Run ``mlip-scaling sweep``."""
    runs = _runs_from_args(args)
    todo = [r for r in runs if not is_finished(r)]
    if args.dry_run:
        for r in runs:
            print(f"{'todo' if r in todo else 'done'}  {r.name}  {shlex.join(r.command)}")
    print(f"{len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to run")
    if args.dry_run or not todo:
        return 0
    if args.launcher == "slurm":
        return _submit_slurm(todo, args)
    return _run_local(todo, args.jobs, args.quiet)
