"""Speed of one energy + forces + stress call of the small presets of every family, next to
MACE built from scratch (:mod:`mace_peer`), on a 256-atom rattled fcc Cu cell (float32 and float64).

    python benchmarks/bench_models.py                      # presets up to 200k parameters
    python benchmarks/bench_models.py --max-params 1e6 --repeats 9 --threads 4

Times are medians of ``--repeats`` calls of the model with a precomputed neighbour list
(vesin takes ~1.4 ms for this cell), after one warm-up call. MACE (72,848 parameters:
2 layers, 32x0e+32x1o, max_ell 3, correlation 3, r_max 5 Å, random weights) runs in a
subprocess of the interpreter in ``MACE_PYTHON`` (a venv with mace-torch, which pins
e3nn 0.4.4), default ``/work/venvs/mace/bin/python``; it is skipped with a note if absent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from ase import Atoms
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).parent))
import mace_peer  # noqa: E402
from mace_peer import median_ms  # noqa: E402,F401 (the timer of every benchmark)

from mlip_scaling.data.atomic_data import from_atoms  # noqa: E402
from mlip_scaling.data.neighbors import NeighborListTransform  # noqa: E402
from mlip_scaling.models import registry  # noqa: E402
from mlip_scaling.models.potential import Potential  # noqa: E402
from mlip_scaling.models.presets import PRESET_PARAMS  # noqa: E402

MACE_PARAMS = 72_848
DTYPES = ("float32", "float64")


def rattled_copper() -> Atoms:
    """256-atom fcc Cu (a = 3.61 Å), rattled by 0.05 Å."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)
    atoms.rattle(0.05, seed=0)
    return atoms


def time_preset(name: str, atoms: Atoms, dtype: str, repeats: int) -> float:
    """ms per energy + forces + stress call of preset ``name`` in ``dtype``."""
    family, config = registry.get_preset(name)
    torch.manual_seed(0)
    model = registry.build_model(family, config)
    potential = Potential(model, family, config, species=[29]).to(getattr(torch, dtype)).eval()
    data = from_atoms(atoms, labels=False, dtype=getattr(torch, dtype))
    data = NeighborListTransform(potential.cutoff)(data)
    return median_ms(lambda: potential(data), repeats)


def run_mace(python: str, threads: int, repeats: int, clock: str = "wall") -> dict[str, float]:
    """``{dtype: ms}`` of the 72,848-parameter MACE (:mod:`mace_peer`, one element) on
    :func:`rattled_copper` in a subprocess of ``python``, timed by ``clock`` ("wall" or
    "process"); empty (with a note) if the interpreter is absent or fails."""
    spec = {
        "channels": 32,
        "species": [29],
        "threads": threads,
        "repeats": repeats,
        "clock": clock,
        "dtypes": list(DTYPES),
        "infer": mace_peer.atoms_spec(rattled_copper()),
    }
    result = mace_peer.run(python, spec)
    if result is None:
        return {}
    if result["params"] != MACE_PARAMS:
        print(f"note: MACE has {result['params']:,} parameters, expected {MACE_PARAMS:,}")
    return result["infer_ms"]


def small_presets(max_params: float) -> list[str]:
    """Presets of every registered family with at most ``max_params`` parameters."""
    names = []
    for family in registry.FAMILIES:
        names += [n for n in registry.list_presets(family) if PRESET_PARAMS[n] <= max_params]
    return names


def print_table(rows: list[tuple[str, int, dict[str, float]]], mace: dict[str, float]) -> None:
    head = f"{'model':<24}{'params':>12}" + "".join(f"{d + ' ms':>14}{'x MACE':>8}" for d in DTYPES)
    print(head)
    print("-" * len(head))
    for name, params, ms in rows:
        cells = ""
        for d in DTYPES:
            ratio = f"{ms[d] / mace[d]:.2f}" if d in mace else "-"
            cells += f"{ms[d]:>14.1f}{ratio:>8}"
        print(f"{name:<24}{params:>12,}{cells}")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--max-params", type=float, default=2e5, help="largest preset to time (parameters)"
    )
    parser.add_argument("--presets", nargs="*", help="preset names (default: all small ones)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per model")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--mace-python", default=mace_peer.mace_python(), help="python of a mace-torch venv"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    atoms = rattled_copper()
    names = args.presets or small_presets(args.max_params)
    print(
        f"{len(atoms)}-atom rattled fcc Cu, energy+forces+stress, median of {args.repeats}, "
        f"{args.threads} threads, torch {torch.__version__}"
    )
    mace = run_mace(args.mace_python, args.threads, args.repeats)
    rows: list[tuple[str, int, dict[str, float]]] = []
    if mace:
        rows.append(("MACE (from scratch)", MACE_PARAMS, mace))
    for name in names:
        ms = {d: time_preset(name, atoms, d, args.repeats) for d in DTYPES}
        rows.append((name, PRESET_PARAMS[name], ms))
        print(f"  {name}: " + ", ".join(f"{d} {v:.1f} ms" for d, v in ms.items()), flush=True)
    print()
    print_table(rows, mace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
