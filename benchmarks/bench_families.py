"""Inference and training-step time of the families at similar sizes (one CPU thread).

    python benchmarks/bench_families.py                       # the default presets below
    python benchmarks/bench_families.py --presets bpnn-79k gemnet-108k --repeats 9

Inference: one energy + forces + stress call on a 256-atom rattled Cu-Ni fcc cell
(neighbour list precomputed). Training step: forward with the graph kept, an energy +
force + stress loss, backward and an AdamW step on a batch of eight 32-atom Cu-Ni cells.
Both are medians of ``--repeats`` runs after one warm-up, in CPU time of this process
(``time.process_time``) with one thread, so that other jobs on the machine slow them
less than wall-clock time; float32.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from ase import Atoms
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).parent))
from bench_models import median_ms  # noqa: E402

from mlip_scaling import keys  # noqa: E402
from mlip_scaling.data.atomic_data import collate, from_atoms  # noqa: E402
from mlip_scaling.data.neighbors import NeighborListTransform  # noqa: E402
from mlip_scaling.models import registry  # noqa: E402
from mlip_scaling.models.potential import Potential  # noqa: E402
from mlip_scaling.models.presets import PRESET_PARAMS  # noqa: E402

DEFAULT = ["transformer-18k", "eqv2-22k", "bpnn-13k", "gemnet-35k",
           "transformer-57k", "eqv2-57k", "bpnn-79k", "gemnet-108k"]


def cuni(repeat: int, seed: int) -> Atoms:
    """Rattled fcc Cu with every third atom Ni, ``4·repeat³`` atoms."""
    atoms = bulk("Cu", "fcc", a=3.58, cubic=True) * (repeat, repeat, repeat)
    atoms.numbers[::3] = 28
    atoms.rattle(0.05, seed=seed)
    return atoms


def _potential(name: str) -> Potential:
    family, config = registry.get_preset(name)
    torch.manual_seed(0)
    model = registry.build_model(family, config)
    return Potential(model, family, config, species=[28, 29]).float()


def _graph(atoms: Atoms, cutoff: float) -> dict:
    return NeighborListTransform(cutoff)(from_atoms(atoms, labels=False, dtype=torch.float32))


def inference_ms(name: str, repeats: int) -> float:
    """CPU ms of one energy + forces + stress call on 256 atoms."""
    potential = _potential(name).eval()
    data = _graph(cuni(4, 0), potential.cutoff)
    return median_ms(lambda: potential(data), repeats, clock=time.process_time)


def train_step_ms(name: str, repeats: int) -> float:
    """CPU ms of one training step (energy, force and stress loss) on 8 x 32 atoms."""
    potential = _potential(name).train()
    structures = [_graph(cuni(2, seed), potential.cutoff) for seed in range(8)]
    batch = collate(structures)
    optimizer = torch.optim.AdamW(potential.parameters(), lr=1e-4)

    def step() -> None:
        out = potential(batch, create_graph=True)
        loss = out[keys.ENERGY].square().mean() + out[keys.FORCES].square().mean() \
            + out[keys.STRESS].square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return median_ms(step, repeats, clock=time.process_time)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=DEFAULT, help="preset names")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per number")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"CPU ms (1 thread, float32, median of {args.repeats}), torch {torch.__version__}")
    print(f"{'model':<18}{'params':>12}{'inference 256 at.':>20}{'train step 8x32 at.':>22}")
    for name in args.presets:
        infer, step = inference_ms(name, args.repeats), train_step_ms(name, args.repeats)
        print(f"{name:<18}{PRESET_PARAMS[name]:>12,}{infer:>20.1f}{step:>22.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
