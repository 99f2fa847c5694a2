"""Inference and training-step time of the families at similar sizes beside MACE (one thread).

    python benchmarks/bench_families.py                       # the size classes below
    python benchmarks/bench_families.py --presets bpnn-79k gemnet-108k --repeats 9
    python benchmarks/bench_families.py --dtypes float32 --no-mace

Inference: one energy + forces + stress call on a 256-atom rattled Cu-Ni fcc cell
(neighbour list precomputed), in each of ``--dtypes``. Training step (float32): forward
with the graph kept, an energy + force + stress loss, backward and an AdamW step on a batch
of eight 32-atom Cu-Ni cells. Both are medians of ``--repeats`` runs after one warm-up, in
CPU time of the process (``time.process_time``) with one thread, so that other jobs on the
machine slow them less than wall-clock time. MACE (:mod:`mace_peer`, built from scratch with
the Cu and Ni elements, in the mace-torch interpreter ``MACE_PYTHON``) is timed the same way
on the same structures at the hidden width nearest in parameters to each preset
(``MACE_SIZES``); "x MACE" is the preset's time over that MACE's.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from ase import Atoms
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).parent))
import mace_peer  # noqa: E402
from bench_models import median_ms  # noqa: E402

from mlip_scaling import keys  # noqa: E402
from mlip_scaling.data.atomic_data import collate, from_atoms  # noqa: E402
from mlip_scaling.data.neighbors import NeighborListTransform  # noqa: E402
from mlip_scaling.models import registry  # noqa: E402
from mlip_scaling.models.potential import Potential  # noqa: E402
from mlip_scaling.models.presets import PRESET_PARAMS  # noqa: E402

#: two size classes: every family's preset nearest ~20k and ~60k parameters
DEFAULT = [
    "transformer-18k",
    "eqv2-22k",
    "eqv2d-31k",
    "bpnn-13k",
    "gemnet-12k",
    "transformer-57k",
    "eqv2-57k",
    "eqv2d-81k",
    "bpnn-79k",
    "gemnet-35k",
]
#: MACE hidden channels C (``{C}x0e+{C}x1o``) -> its parameter count with Cu and Ni
MACE_SIZES = {8: 28_104, 24: 58_680, 32: 78_576}
SPECIES = [28, 29]


def cuni(repeat: int, seed: int) -> Atoms:
    """Rattled fcc Cu with every third atom Ni, ``4·repeat³`` atoms."""
    atoms = bulk("Cu", "fcc", a=3.58, cubic=True) * (repeat, repeat, repeat)
    atoms.numbers[::3] = 28
    atoms.rattle(0.05, seed=seed)
    return atoms


def train_cells() -> list[Atoms]:
    """The training batch: eight 32-atom cells."""
    return [cuni(2, seed) for seed in range(8)]


def _potential(name: str, dtype: torch.dtype = torch.float32) -> Potential:
    family, config = registry.get_preset(name)
    torch.manual_seed(0)
    model = registry.build_model(family, config)
    return Potential(model, family, config, species=SPECIES).to(dtype)


def _graph(atoms: Atoms, cutoff: float, dtype: torch.dtype = torch.float32) -> dict:
    return NeighborListTransform(cutoff)(from_atoms(atoms, labels=False, dtype=dtype))


def inference_ms(name: str, repeats: int, dtype: str = "float32") -> float:
    """CPU ms of one energy + forces + stress call on 256 atoms in ``dtype``."""
    potential = _potential(name, getattr(torch, dtype)).eval()
    data = _graph(cuni(4, 0), potential.cutoff, getattr(torch, dtype))
    return median_ms(lambda: potential(data), repeats, clock=time.process_time)


def train_step_ms(name: str, repeats: int) -> float:
    """CPU ms of one training step (energy, force and stress loss) on 8 x 32 atoms."""
    potential = _potential(name).train()
    batch = collate([_graph(atoms, potential.cutoff) for atoms in train_cells()])
    optimizer = torch.optim.AdamW(potential.parameters(), lr=1e-4)

    def step() -> None:
        out = potential(batch, create_graph=True)
        loss = (
            out[keys.ENERGY].square().mean()
            + out[keys.FORCES].square().mean()
            + out[keys.STRESS].square().mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return median_ms(step, repeats, clock=time.process_time)


def mace_channels(params: int) -> int:
    """The MACE width of :data:`MACE_SIZES` nearest to ``params`` on a log scale."""
    return min(MACE_SIZES, key=lambda c: abs(math.log(MACE_SIZES[c] / params)))


def time_mace(python: str, channels: int, repeats: int, dtypes: Sequence[str]) -> dict | None:
    """MACE of width ``channels`` timed like the presets: ``{"params", "infer_ms": {dtype:
    ms}, "train_ms"}``, or None when no mace-torch interpreter runs."""
    spec = {
        "channels": channels,
        "species": SPECIES,
        "threads": 1,
        "repeats": repeats,
        "clock": "process",
        "dtypes": list(dtypes),
        "infer": mace_peer.atoms_spec(cuni(4, 0)),
        "train": [mace_peer.atoms_spec(a) for a in train_cells()],
    }
    result = mace_peer.run(python, spec)
    if result is not None and result["params"] != MACE_SIZES[channels]:
        print(
            f"note: MACE {channels}x has {result['params']:,} parameters, "
            f"expected {MACE_SIZES[channels]:,}"
        )
    return result


def row(name: str, params: int, times: dict, mace: dict | None, dtypes: Sequence[str]) -> str:
    """One table line: times in ms, each with its ratio to ``mace`` ("-" without it)."""
    cells = [(times["infer_ms"][d], mace and mace["infer_ms"][d]) for d in dtypes]
    cells.append((times["train_ms"], mace and mace["train_ms"]))
    text = "".join(f"{ms:>12.1f}{(f'{ms / ref:.2f}' if ref else '-'):>8}" for ms, ref in cells)
    return f"{name:<20}{params:>10,}{text}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=DEFAULT, help="preset names")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per number")
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "float64"],
        choices=["float32", "float64"],
        help="inference precisions",
    )
    parser.add_argument("--no-mace", action="store_true", help="time only the presets")
    parser.add_argument(
        "--mace-python", default=mace_peer.mace_python(), help="python of a mace-torch venv"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"CPU ms (1 thread, median of {args.repeats}; training step float32), "
        f"torch {torch.__version__}"
    )
    widths = sorted({mace_channels(PRESET_PARAMS[n]) for n in args.presets})
    maces = (
        {}
        if args.no_mace
        else {c: time_mace(args.mace_python, c, args.repeats, args.dtypes) for c in widths}
    )
    head = "".join(f"{'infer ' + d[-2:]:>12}{'x MACE':>8}" for d in args.dtypes)
    print(f"{'model':<20}{'params':>10}{head}{'train':>12}{'x MACE':>8}")
    for c in widths:
        if maces.get(c):
            print(row(f"MACE {c}x0e+{c}x1o", maces[c]["params"], maces[c], None, args.dtypes))
    for name in args.presets:
        times = {
            "infer_ms": {d: inference_ms(name, args.repeats, d) for d in args.dtypes},
            "train_ms": train_step_ms(name, args.repeats),
        }
        mace = maces.get(mace_channels(PRESET_PARAMS[name]))
        print(row(name, PRESET_PARAMS[name], times, mace, args.dtypes), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
