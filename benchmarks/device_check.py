"""One check of every GPU path, one table: ``make device-check`` (or this script).

    python benchmarks/device_check.py                # all rows, < 8 min on one GPU
    python benchmarks/device_check.py --budget 300   # stop starting rows after 300 s

Rows (each its own try/except: one failure does not hide the others; a row is skipped once
the time budget is spent):

* training step (forward, forces and stress by autograd with ``create_graph``, backward of
  a loss on all three) of transformer-57k and eqv2-57k in float32, bf16 autocast and
  float64 on a batch of 4 default-dataset structures; checked against the same seeded
  weights on the CPU in float64 (largest force error / largest force, and the relative
  error of the loss gradient);
* ``ScalingCalculator`` on a 2,048-atom Cu-Ni cell in float64 and float32, and ``predict``
  on two such cells (against the CPU in float64);
* torch-sim with on-device neighbour lists (the optional extra; skipped when absent);
* ``device="auto"`` choosing CUDA (the resolver, the calculator, ``mlip-train``'s setup);
* ``mlip-train --amp`` under ``torchrun`` with NCCL: 2 processes where 2 GPUs exist, else 1
  (exit code, steps done, bf16 chosen where the GPU supports it, finite weights);
* fused per-edge kernels: not built in this version.

Times are medians after warm-up with ``torch.cuda.synchronize()`` around each timed call.
Exit code 1 when a row fails. Without a CUDA device it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

NO_CUDA = "no CUDA device: nothing to check"
MODELS = ("transformer-57k", "eqv2-57k")
#: largest force error / largest force allowed against the CPU float64 reference (bf16:
#: 8-bit mantissas through the double backward; the CPU dry run of eqv2-1.5k reads 0.08)
FORCE_TOL = {"float64": 1e-8, "float32": 1e-3, "bf16": 0.25}
#: relative error of the loss gradient allowed
GRAD_TOL = {"float64": 1e-8, "float32": 1e-2, "bf16": 0.25}
MIN_LEFT_S = 15.0  # a row starts only with at least this much of the budget left


class CheckFailed(Exception):
    """A row ran but its result disagrees with the reference."""


class Skipped(Exception):
    """A row that cannot run here (optional extra absent, feature not built)."""


@dataclass
class Row:
    name: str
    status: str  # ok, fail, skip
    timing: str = "-"
    check: str = "-"
    seconds: float = 0.0


def run_checks(checks: list[tuple[str, Callable[[], tuple[str, str]]]], budget_s: float,
               clock: Callable[[], float] = time.monotonic) -> list[Row]:
    """Run every ``check() -> (timing, check)``; failures and skips become rows, and rows
    that would start with less than ``MIN_LEFT_S`` of ``budget_s`` left are skipped."""
    start, rows = clock(), []
    for name, check in checks:
        left = budget_s - (clock() - start)
        if left < MIN_LEFT_S:
            rows.append(Row(name, "skip", check=f"time guard ({left:.0f} s of budget left)"))
            continue
        began = clock()
        try:
            timing, result = check()
            row = Row(name, "ok", timing, result)
        except Skipped as exc:
            row = Row(name, "skip", check=str(exc))
        except CheckFailed as exc:
            row = Row(name, "fail", check=str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure becomes one row
            first = (str(exc).strip().splitlines() or [""])[0][:120]
            row = Row(name, "fail", check=f"{type(exc).__name__}: {first}")
        row.seconds = clock() - began
        rows.append(row)
    return rows


def format_table(rows: list[Row]) -> str:
    """The rows as one plain-text table."""
    head = ("check", "status", "time", "vs CPU float64 / detail", "wall s")
    body = [(r.name, r.status, r.timing, r.check, f"{r.seconds:.1f}") for r in rows]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(call: Callable[[], object], device: torch.device, repeats: int = 5,
              warmup: int = 2) -> float:
    """Median wall time (ms) of ``call`` on ``device``, synchronised before and after."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def _seeded(preset: str):
    """Seed-0 float64 CPU potential of ``preset`` (species 1-89)."""
    from mlip_scaling.models import registry
    from mlip_scaling.models.potential import Potential

    family, config = registry.get_preset(preset)
    torch.manual_seed(0)
    model = registry.build_model(family, config)
    return Potential(model, family, config, species=list(range(1, 90))).double()


def _batch(atoms: list, cutoff: float, dtype: torch.dtype, device: torch.device) -> dict:
    from mlip_scaling.data.atomic_data import collate, from_atoms
    from mlip_scaling.data.neighbors import NeighborListTransform

    nl = NeighborListTransform(cutoff)
    return collate([nl(from_atoms(a, labels=False, dtype=dtype)) for a in atoms], device=device)


def _train_atoms() -> list:
    from mlip_scaling.data.embedded import default_data_path
    from mlip_scaling.data.store import StructureStore

    store = StructureStore(default_data_path())
    return [store.get_atoms(i) for i in range(4)]


def _step(potential, batch: dict, precision: str,
          device: torch.device) -> tuple[dict, torch.Tensor]:
    """One training step's outputs and flat loss gradient (float64 on the CPU)."""
    from mlip_scaling import keys
    from mlip_scaling.training.precision import autocast

    potential.zero_grad(set_to_none=True)
    with autocast("bf16" if precision == "bf16" else "off", device):
        out = potential(batch, create_graph=True)
    loss = sum(out[k].float().square().mean() for k in (keys.ENERGY, keys.FORCES, keys.STRESS))
    loss.backward()
    grad = torch.cat([p.grad.reshape(-1) for p in potential.parameters() if p.grad is not None])
    out = {k: out[k].detach().double().cpu() for k in (keys.ENERGY, keys.FORCES, keys.STRESS)}
    return out, grad.detach().double().cpu()


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-300))


# --------------------------------------------------------------------------- rows
class DeviceCheck:
    """The rows, sharing CPU float64 references between them."""

    def __init__(self, device: torch.device, models: tuple[str, str] = MODELS) -> None:
        self.device, self.models = device, models
        self._refs: dict[str, object] = {}
        self._atoms = None

    def _reference(self, preset: str) -> tuple[dict, torch.Tensor]:
        if preset not in self._refs:
            self._atoms = self._atoms or _train_atoms()
            pot = _seeded(preset).train()
            cpu = torch.device("cpu")
            self._refs[preset] = _step(pot, _batch(self._atoms, pot.cutoff, torch.float64, cpu),
                                       "float64", cpu)
        return self._refs[preset]

    def train(self, preset: str, precision: str) -> tuple[str, str]:
        from mlip_scaling import keys

        ref_out, ref_grad = self._reference(preset)
        dtype = torch.float64 if precision == "float64" else torch.float32
        pot = _seeded(preset).to(device=self.device, dtype=dtype).train()
        batch = _batch(self._atoms, pot.cutoff, dtype, self.device)
        ms = median_ms(lambda: _step(pot, batch, precision, self.device), self.device)
        out, grad = _step(pot, batch, precision, self.device)
        f_err = _rel(out[keys.FORCES], ref_out[keys.FORCES])
        g_err = float((grad - ref_grad).norm() / ref_grad.norm())
        check = f"force err {f_err:.1e}, grad err {g_err:.1e}"
        if not (f_err <= FORCE_TOL[precision] and g_err <= GRAD_TOL[precision]):
            raise CheckFailed(f"{check} (tolerance {FORCE_TOL[precision]:g} / "
                              f"{GRAD_TOL[precision]:g})")
        return f"{ms:.1f} ms/step", check

    def _cell(self):
        from ase.build import bulk

        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (8, 8, 8)  # 2,048 atoms
        atoms.symbols[::3] = "Ni"
        atoms.rattle(0.05, seed=0)
        return atoms

    def _calc_reference(self, preset: str) -> dict:
        key = f"calc {preset}"
        if key not in self._refs:
            from mlip_scaling.calculators.ase import ScalingCalculator

            calc = ScalingCalculator(_seeded(preset), device="cpu", dtype="float64")
            self._refs[key] = calc.predict([self._cell()])[0]
        return self._refs[key]

    def calculator(self, preset: str, dtype: str) -> tuple[str, str]:
        from mlip_scaling.calculators.ase import ScalingCalculator

        ref = self._calc_reference(preset)
        calc = ScalingCalculator(_seeded(preset), device=self.device, dtype=dtype)
        atoms = self._cell()
        start, gen = atoms.positions.copy(), torch.Generator().manual_seed(0)
        atoms.calc = calc

        def call() -> None:  # an MD-like move to a new geometry (never a cached result)
            atoms.positions = start + 1e-3 * torch.randn(len(atoms), 3, generator=gen).numpy()
            atoms.get_forces()

        ms = median_ms(call, self.device, repeats=3, warmup=1)
        atoms.positions = start  # not evaluated before: computed afresh
        f_err = _rel(torch.as_tensor(atoms.get_forces()), torch.as_tensor(ref["forces"]))
        e_err = abs(atoms.get_potential_energy() - float(ref["energy"])) / len(atoms)
        tol = FORCE_TOL[dtype]
        check = f"force err {f_err:.1e}, energy {e_err:.1e} eV/atom"
        if not (f_err <= tol and e_err <= tol):
            raise CheckFailed(f"{check} (tolerance {tol:g})")
        return f"{ms:.0f} ms/call", check

    def predict(self, preset: str) -> tuple[str, str]:
        from mlip_scaling.calculators.ase import ScalingCalculator

        ref = self._calc_reference(preset)
        calc = ScalingCalculator(_seeded(preset), device=self.device, dtype="float64")
        cells = [self._cell(), self._cell()]
        ms = median_ms(lambda: calc.predict(cells, batch_size=2), self.device, 3, 1)
        results = calc.predict(cells, batch_size=2)
        f_err = max(_rel(torch.as_tensor(r["forces"]), torch.as_tensor(ref["forces"]))
                    for r in results)
        if not f_err <= FORCE_TOL["float64"]:
            raise CheckFailed(f"force err {f_err:.1e} (tolerance {FORCE_TOL['float64']:g})")
        return f"{ms:.0f} ms/2 cells", f"force err {f_err:.1e}"

    def torchsim(self, preset: str) -> tuple[str, str]:
        try:
            import torch_sim as ts

            from mlip_scaling.calculators.torchsim import ScalingTorchSimModel
        except ImportError as exc:
            raise Skipped(f"torch-sim extra not installed ({type(exc).__name__})") from None
        ref = self._calc_reference(preset)
        model = ScalingTorchSimModel(_seeded(preset), device=self.device, dtype="float64")
        state = ts.io.atoms_to_state([self._cell()], self.device, torch.float64)
        forces = model(state)["forces"].detach().cpu()
        f_err = _rel(forces, torch.as_tensor(ref["forces"]))
        if not f_err <= FORCE_TOL["float64"]:
            raise CheckFailed(f"force err {f_err:.1e} (tolerance {FORCE_TOL['float64']:g})")
        kwargs = {"model": model, "integrator": ts.nve, "temperature": 300.0,
                  "timestep": 0.001, "n_steps": 5}
        ms = median_ms(lambda: ts.integrate(system=[self._cell()], **kwargs), self.device, 1, 1)
        return f"{ms / 5:.0f} ms/MD step", f"force err {f_err:.1e}"

    def auto_device(self) -> tuple[str, str]:
        from mlip_scaling.calculators.ase import ScalingCalculator
        from mlip_scaling.devices import resolve_device
        from mlip_scaling.training.distributed import init_distributed

        chosen = {"resolve_device": resolve_device("auto").type,
                  "ScalingCalculator": ScalingCalculator(_seeded(self.models[0])).device.type,
                  "mlip-train setup": init_distributed("auto")[1].type}
        wrong = [k for k, v in chosen.items() if v != "cuda"]
        if wrong:
            raise CheckFailed(f"not CUDA: {', '.join(f'{k} -> {chosen[k]}' for k in wrong)}")
        return "-", "cuda chosen by " + ", ".join(chosen)

    def ddp(self, timeout_s: float) -> tuple[str, str]:
        cuda = self.device.type == "cuda"
        nproc = min(2, torch.cuda.device_count()) if cuda else 1
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={nproc}", "-m", "mlip_scaling.training.cli",
                    "--model", self.models[0], "--amp", "auto" if cuda else "off",
                    "--device", self.device.type, "--batch-size", "8",
                    "--train-size", "32", "--val-size", "8", "--test-size", "8",
                    "--max-steps", "3", "--epochs", "10", "--out", str(out), "-q"]
            start = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1][:120]
                raise CheckFailed(f"{nproc} process(es) exit {done.returncode}: {tail}")
            state = torch.load(out / "last.pt", weights_only=True, map_location="cpu")
        finite = all(torch.isfinite(v).all() for v in state["potential"].values()
                     if v.is_floating_point())
        want = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "off"
        if state["step"] != 3 or not finite or state["precision"] != want:
            raise CheckFailed(f"steps {state['step']}, finite weights {finite}, precision "
                              f"{state['precision']} (want 3, True, {want})")
        backend = "NCCL" if cuda else "gloo"
        return f"{seconds:.0f} s/3 steps", f"{nproc} {backend} process(es), {want}, finite weights"

    def rows(self, budget_s: float) -> list[tuple[str, Callable[[], tuple[str, str]]]]:
        checks = [(f"train {m} {p}", lambda m=m, p=p: self.train(m, p))
                  for m in self.models for p in ("float32", "bf16", "float64")]
        for m in self.models:
            checks += [(f"ScalingCalculator {m} 2048 atoms {d}",
                        lambda m=m, d=d: self.calculator(m, d)) for d in ("float64", "float32")]
            checks.append((f"predict {m} 2 x 2048 atoms float64", lambda m=m: self.predict(m)))
        checks += [
            (f"torch-sim {self.models[0]} on-device neighbours",
             lambda: self.torchsim(self.models[0])),
            ('device="auto"', self.auto_device),
            ("mlip-train --amp under torchrun (NCCL)", lambda: self.ddp(max(60.0, budget_s / 4))),
            ("fused per-edge kernels (CUDA)", _not_built),
        ]
        return checks


def _not_built() -> tuple[str, str]:
    raise Skipped("not built (no fused per-edge kernels in this version)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which no further row starts")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="run the rows on the CPU (a test of this script's code paths)")
    parser.add_argument("--models", nargs=2, default=list(MODELS), help="two presets")
    args = parser.parse_args(argv)
    if args.cpu_dry_run:
        device = torch.device("cpu")
        print(f"CPU dry run, torch {torch.__version__}", flush=True)
    elif not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    else:
        device = torch.device("cuda", torch.cuda.current_device())
        props = torch.cuda.get_device_properties(device)
        print(f"{props.name}, {props.total_memory / 2**30:.0f} GiB, "
              f"{torch.cuda.device_count()} GPU(s), torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}", flush=True)
    start = time.perf_counter()
    check = DeviceCheck(device, tuple(args.models))
    rows = run_checks(check.rows(args.budget), args.budget)
    print(format_table(rows))
    failed = sum(r.status == "fail" for r in rows)
    print(f"{len(rows)} rows: {sum(r.status == 'ok' for r in rows)} ok, {failed} failed, "
          f"{sum(r.status == 'skip' for r in rows)} skipped, "
          f"{time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
