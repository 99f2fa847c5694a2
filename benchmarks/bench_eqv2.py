"""EquiformerV2 speed and output stability: training-step and inference times side by side
with peers run in the same process (a transformer of similar size; MACE in its own venv),
and a float64 reference of outputs that every code change must reproduce to 1e-10.

    python benchmarks/bench_eqv2.py                  # timings + check against the reference
    python benchmarks/bench_eqv2.py --check          # only the 1e-10 output check (fused
                                                     # kernels and pure torch)
    python benchmarks/bench_eqv2.py --save           # (re)write the reference file
    python benchmarks/bench_eqv2.py --profile eqv2-57k   # torch.profiler table of a train step

Training step: forward + backward of a loss on energies, forces (autograd with
``create_graph``) and stress, float32, a batch of 4 structures of the default dataset (as
the demo). Inference: energy + forces + stress of a 256-atom rattled Cu cell (float32 and
float64). Times are medians after a warm-up; ratios below 1 mean faster than the peer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import torch
from ase import Atoms
from ase.build import bulk
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from mlip_scaling import keys
from mlip_scaling.checkpoint import potential_from_dict
from mlip_scaling.data.atomic_data import collate, from_atoms
from mlip_scaling.data.embedded import default_data_path
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.data.store import StructureStore
from mlip_scaling.models import registry
from mlip_scaling.models.equiformer_v2 import fused
from mlip_scaling.models.equiformer_v2.fairchem_import import import_fairchem
from mlip_scaling.models.potential import Potential

HERE = Path(__file__).parent
ROOT = HERE.parent
REFERENCE = ROOT / "tests" / "data" / "eqv2_reference.pt"
BASELINE = HERE / "eqv2_baseline.json"
FAIRCHEM_CKPT = ROOT / "tests" / "data" / "fairchem" / "tiny_training.pt"
sys.path.insert(0, str(HERE))
import bench_models  # noqa: E402
from bench_models import MACE_PARAMS, rattled_copper  # noqa: E402

SPECIES = [13, 28, 29]
#: eqv2-S-shaped (OMat24 options, mmax < lmax) at a tiny width
TINY_S = {
    "cutoff": 5.0, "num_layers": 2, "sphere_channels": 8, "attn_hidden_channels": 8,
    "num_heads": 2, "attn_alpha_channels": 4, "attn_value_channels": 4,
    "ffn_hidden_channels": 8, "lmax": 4, "mmax": 2, "grid_resolution": 12,
    "num_distance_basis": 16, "edge_channels": 8, "max_num_elements": 30, "max_neighbors": 12,
    "max_neighbors_strict": False, "norm_type": "layer_norm_sh", "envelope": False,
    "stress_head": "fairchem", "direct_forces": True, "use_grid_mlp": True,
    "parity_average": False,
}
#: separable activations, the package's stress head, parity averaging of direct heads
TINY_MIXED = {
    **TINY_S, "lmax": 3, "mmax": 2, "grid_resolution": None, "max_neighbors": None,
    "norm_type": "rms_norm_sh", "envelope": True, "stress_head": "equivariant",
    "use_grid_mlp": False, "parity_average": True,
}
TIMED = ("eqv2-5.6k", "eqv2-57k")
#: the same presets with the parity average (``parity_average=True``, an option)
OPTIONS = ("eqv2-5.6k/parity", "eqv2-57k/parity")
#: the reference outputs were made with the ladder parity averaged: pinned for them
_AVERAGED = {"parity_average": True}
PEERS = {"eqv2-5.6k": "transformer-7.0k", "eqv2-57k": "transformer-57k"}


def median_ms(call: Callable[[], object], repeats: int) -> float:
    """Median CPU time (ms, all threads of this process) of ``call`` over ``repeats`` runs
    after one warm-up run: on a shared machine CPU time does not count other processes."""
    return bench_models.median_ms(call, repeats, time.process_time)


def run_mace(python: str, threads: int, repeats: int) -> dict[str, float]:
    """bench_models' MACE peer, timed by CPU time like the rest of this script."""
    return bench_models.run_mace(python, threads, repeats, clock="process")


def reference_structures() -> list[Atoms]:
    """A periodic 4-atom alloy, and a non-cubic 8-atom cell (batched together)."""
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    a.numbers[[1, 2]] = [28, 13]
    a.rattle(0.15, seed=0)
    b = bulk("Ni", "fcc", a=3.55) * (2, 2, 2)
    b.cell[0] += (0.3, 0.1, 0.0)
    b.numbers[[0, 3, 5]] = [29, 13, 29]
    b.rattle(0.1, seed=1)
    return [a, b]


def reference_models() -> dict[str, Potential]:
    """Float64 potentials with seed-0 random weights (fairchem: the imported fixture); the
    ladder presets parity averaged, as when the reference was written."""
    models = {}
    for name, (family, cfg) in [
        *[(n, ("eqv2", {**registry.get_preset(n)[1], **_AVERAGED}))
          for n in ("eqv2-1.5k", "eqv2-5.6k", "eqv2-57k")],
        ("tiny-S", ("eqv2", TINY_S)),
        ("tiny-mixed", ("eqv2", TINY_MIXED)),
    ]:
        torch.manual_seed(0)
        model = registry.build_model(family, cfg)
        models[name] = Potential(model, family, cfg, species=SPECIES).to(torch.float64)
    models["fairchem"] = potential_from_dict(import_fairchem(FAIRCHEM_CKPT)).to(torch.float64)
    return models


def _batch(atoms: list[Atoms], cutoff: float, dtype: torch.dtype) -> dict:
    nl = NeighborListTransform(cutoff)
    return collate([nl(from_atoms(a, labels=False, dtype=dtype)) for a in atoms])


def predict(potential: Potential, atoms: list[Atoms]) -> dict[str, torch.Tensor]:
    """Energy [B], forces [N, 3], stress [B, 3, 3] of the batch, float64."""
    out = potential(_batch(atoms, potential.cutoff, torch.float64))
    return {k: out[k].detach() for k in (keys.ENERGY, keys.FORCES, keys.STRESS)}


def _weights(potential: Potential, name: str) -> dict[str, torch.Tensor]:
    """Parameters of a seeded model, in float32 (their initial precision: lossless)."""
    if name == "fairchem":  # rebuilt from its fixture
        return {}
    return {k: v.detach().float() for k, v in potential.named_parameters()}


def compute_reference() -> dict:
    """Outputs per model on the batch of 2 and on each structure alone, plus weights."""
    structures = reference_structures()
    ref = {}
    for name, potential in reference_models().items():
        ref[name] = {
            "batch": predict(potential, structures),
            "single": [predict(potential, [a]) for a in structures],
            "weights": _weights(potential, name),
        }
    return ref


def check_reference(path: Path = REFERENCE, tol: float = 1e-10) -> list[str]:
    """Names of (model, output) pairs that differ from the stored reference by more than
    ``tol`` relative to the output's largest magnitude; empty when all match."""
    stored = torch.load(path, weights_only=True)
    structures = reference_structures()
    bad = []
    for name, potential in reference_models().items():
        with torch.no_grad():  # the stored weights, whatever the construction order
            params = dict(potential.named_parameters())
            for key, value in stored[name]["weights"].items():
                params[key].copy_(value)
        got = {"batch": predict(potential, structures),
               "single": [predict(potential, [a]) for a in structures]}
        pairs = [("batch", got["batch"], stored[name]["batch"])]
        pairs += [(f"single{i}", g, s) for i, (g, s) in
                  enumerate(zip(got["single"], stored[name]["single"]))]
        for where, g, s in pairs:
            for key, want in s.items():
                err = (g[key] - want).abs().max().item()
                if err > tol * max(want.abs().max().item(), 1e-300):
                    bad.append(f"{name} {where} {key}: max error {err:.3e}")
    return bad


def train_batch(size: int = 4) -> list[Atoms]:
    """``size`` structures of the default dataset (one batch of the demo)."""
    store = StructureStore(default_data_path())
    return [store.get_atoms(i) for i in range(size)]


def _potential(name: str, dtype: torch.dtype) -> Potential:
    """Seed-0 potential of preset ``name``; ``<preset>/parity``: with the parity average
    (the option, not a preset)."""
    preset, _, option = name.partition("/")
    family, cfg = registry.get_preset(preset)
    if option == "parity":
        cfg = {**cfg, **_AVERAGED}
    torch.manual_seed(0)
    model = registry.build_model(family, cfg)
    species = list(range(1, 90))
    return Potential(model, family, cfg, species=species).to(dtype)


def train_step(name: str) -> Callable[[], None]:
    """One training step of preset ``name`` (float32, batch of 4): forward, forces and
    stress with ``create_graph``, backward of a loss on all three."""
    potential = _potential(name, torch.float32).train()
    data = _batch(train_batch(), potential.cutoff, torch.float32)

    def step() -> None:
        out = potential(data, create_graph=True)
        loss = (out[keys.ENERGY].square().mean() + out[keys.FORCES].square().mean()
                + out[keys.STRESS].square().mean())
        loss.backward()
        potential.zero_grad(set_to_none=True)

    return step


def train_step_ms(name: str, repeats: int) -> float:
    """ms of one training step (:func:`train_step`)."""
    return median_ms(train_step(name), repeats)


def inference_ms(name: str, dtype: torch.dtype, repeats: int) -> float:
    """ms per energy + forces + stress call on the 256-atom Cu cell."""
    potential = _potential(name, dtype).eval()
    data = _batch([rattled_copper()], potential.cutoff, dtype)
    return median_ms(lambda: potential(data), repeats)


def measure(names: list[str], repeats: int) -> dict[str, dict[str, float]]:
    """``{name: {"train_f32": ms, "infer_f32": ms, "infer_f64": ms}}``."""
    out = {}
    for name in names:
        out[name] = {
            "train_f32": train_step_ms(name, repeats),
            "infer_f32": inference_ms(name, torch.float32, repeats),
            "infer_f64": inference_ms(name, torch.float64, repeats),
        }
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in out[name].items()),
              flush=True)
    return out


def _speedup(baseline: dict, preset: str, column: str, ratio_now: float) -> float | None:
    """(baseline time / its peer's) / (time now / the peer's now), or None."""
    base, peer = baseline.get(preset, {}).get(column), baseline.get(PEERS[preset], {}).get(column)
    return base / peer / ratio_now if base and peer else None


def print_table(now: dict, baseline: dict, mace: dict[str, float]) -> None:
    cols = ("train_f32", "infer_f32", "infer_f64")
    head = f"{'model':<20}" + "".join(f"{c + ' ms':>15}{'x peer':>8}{'x base':>8}" for c in cols)
    print(head)
    print("-" * len(head))
    for name in (*TIMED, *OPTIONS):
        row = f"{name:<20}"
        preset = name.partition("/")[0]
        for c in cols:
            ms = now[name][c]
            peer = now[PEERS[preset]][c]
            base = _speedup(baseline, preset, c, ms / peer)
            row += f"{ms:>15.1f}{ms / peer:>8.2f}"
            row += f"{base:>7.2f}x" if base else f"{'-':>8}"
        print(row)
    print("x peer: time / the transformer of similar size (same run); x base: speed-up over "
          "the stored baseline of the preset (benchmarks/eqv2_baseline.json), both as ratios "
          "to their peer, so that the load of a shared machine cancels; the baseline was "
          "measured with the ladder parity averaged (/parity rows), so the plain rows' "
          "x base includes dropping the average")
    if mace:
        for name in (*TIMED, *OPTIONS):
            ratios = ", ".join(f"{d} {now[name]['infer_f' + d[-2:]] / mace[d]:.2f}"
                               for d in ("float32", "float64"))
            print(f"{name} inference / MACE ({MACE_PARAMS:,} params): {ratios}")


def profile(name: str, rows: int) -> None:
    """Print the torch.profiler table of 3 training steps of preset ``name``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step = train_step(name)
    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


class _EdgeOpCounter(TorchDispatchMode):
    """Counts operator calls whose output has at least ``size`` elements."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.count = size, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.numel() >= self.size:
            self.count += 1
        return out


def gemm_rate(rows: int, repeats: int = 20) -> float:
    """GFLOP/s of this CPU on a ``[rows, 64] x [64, 64]`` float32 product (an SO(2)
    convolution's shape)."""
    a, b = torch.randn(rows, 64), torch.randn(64, 64)
    seconds = median_ms(lambda: a @ b, repeats) / 1e3
    return 2 * rows * 64 * 64 / max(seconds, 1e-9) / 1e9


def where_the_time_goes(name: str, step_ms: float) -> str:
    """One paragraph: GEMM FLOPs of a training step, the time they take at this CPU's
    GEMM rate (the floor without removing work), and the number of edge-sized ops."""
    step = train_step(name)
    with FlopCounterMode(display=False) as flops:
        step()
    potential = _potential(name, torch.float32)
    edges = _batch(train_batch(), potential.cutoff, torch.float32)[keys.EDGE_INDEX].shape[1]
    edges *= 1 + bool(potential.model.parity_average)
    counter = _EdgeOpCounter(edges)
    with counter:
        step()
    gflop = flops.get_total_flops() / 1e9
    rate = gemm_rate(edges)
    floor = 1e3 * gflop / rate
    return (f"{name}: a training step holds {gflop:.2f} GFLOP of matrix products; at the "
            f"{rate:.0f} GFLOP/s this CPU reaches on [{edges}, 64] x [64, 64] that is "
            f"{floor:.0f} ms, {100 * floor / step_ms:.0f}% of the {step_ms:.0f} ms step. The "
            f"rest is {counter.count} operator calls on tensors of >= {edges} elements (one "
            f"per edge; edge tensors hold <= 32 channels x <= 18 grid points): memory-bound "
            f"elementwise, layout and autograd work of the forward, the force backward and "
            f"the double backward of the force loss, which torch.compile cannot fuse here "
            f"(torch {torch.__version__.split('+')[0]}: no double backward through compiled "
            f"graphs).")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--save", action="store_true", help="write the float64 reference")
    parser.add_argument("--check", action="store_true", help="only check the reference")
    parser.add_argument("--save-baseline", action="store_true",
                        help="store this run's times as the baseline")
    parser.add_argument("--profile", metavar="PRESET", help="profile a training step")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-mace", action="store_true", help="skip the MACE peer")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    if args.save:
        torch.save(compute_reference(), REFERENCE)
        print(f"wrote {REFERENCE}")
        return 0
    bad = []
    for enabled in (True, False) if fused.available() else (False,):
        with fused.fused_kernels(enabled):
            errors = check_reference()
        path = "fused kernels" if enabled else "pure torch"
        print(f"outputs vs the float64 reference (1e-10), {path}: "
              + ("OK" if not errors else "; ".join(errors)))
        bad += errors
    if args.check or bad:
        return 1 if bad else 0
    if args.profile:
        profile(args.profile, 25)
        return 0
    print(f"CPU time, median of {args.repeats}, {args.threads} threads, torch {torch.__version__}")
    now = measure([*TIMED, *OPTIONS, *PEERS.values()], args.repeats)
    if args.save_baseline:
        BASELINE.write_text(json.dumps({n: now[n] for n in (*TIMED, *PEERS.values())},
                                       indent=1) + "\n")
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    mace_python = os.environ.get("MACE_PYTHON", "/work/venvs/mace/bin/python")
    mace = {} if args.no_mace else run_mace(mace_python, args.threads, args.repeats)
    print_table(now, baseline, mace)
    print("\nwhere a training step's time goes:")
    for name in TIMED:
        print(textwrap.fill(where_the_time_goes(name, now[name]["train_f32"]), 100))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
