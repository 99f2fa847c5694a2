"""Shared pieces of the training tests: EMT-labelled structures, a tiny model, a trainer.

Run as a script (``python tests/test_training_helpers.py RUN_DIR STEPS [--resume]``) it
trains the tiny model in a subprocess, for the kill-and-resume test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from torch import nn

from mlip_scaling import keys
from mlip_scaling.data import dataset
from mlip_scaling.models.potential import Potential
from mlip_scaling.training.config import TrainConfig
from mlip_scaling.training.distributed import DistInfo
from mlip_scaling.training.normalization import energy_scale, fit_reference_energies
from mlip_scaling.training.trainer import Trainer

CUTOFF = 4.0


def emt_structures(n: int, seed: int = 0) -> list:
    """``n`` rattled, strained 4-atom fcc Cu/Al cells labelled by ASE EMT (with stress)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.numbers[rng.random(4) < 0.3] = 13
        atoms.set_cell(atoms.cell * (1 + 0.03 * rng.standard_normal()), scale_atoms=True)
        atoms.positions += 0.08 * rng.standard_normal((4, 3))
        atoms.calc = EMT()
        atoms.info.update(energy=atoms.get_potential_energy())
        atoms.arrays["forces"] = atoms.get_forces()
        atoms.info["stress"] = atoms.get_stress()
        atoms.calc = None
        out.append(atoms)
    return out


class TinyModel(nn.Module):
    """Smooth pairwise model: e_i = MLP(emb(Z_i) + Σ_j W·rbf(r_ij)·fcut(r_ij))."""

    direct_forces = False

    def __init__(self, cutoff: float = CUTOFF, width: int = 8, num_basis: int = 6) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.embed = nn.Embedding(100, width)
        self.register_buffer("centers", torch.linspace(1.5, cutoff, num_basis))
        self.edge = nn.Linear(num_basis, width)
        self.out = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1))

    def forward(self, data: dict) -> dict:
        r = data[keys.EDGE_LENGTHS]
        rbf = torch.exp(-4.0 * (r[:, None] - self.centers.to(r.dtype)) ** 2)
        fcut = 0.5 * (torch.cos(torch.pi * r / self.cutoff) + 1.0)
        msg = self.edge(rbf.to(self.edge.weight.dtype)) * fcut[:, None].to(self.edge.weight.dtype)
        h = self.embed(data[keys.ATOMIC_NUMBERS])
        h = h.index_add(0, data[keys.EDGE_INDEX][0], msg.to(h.dtype))
        return {keys.ATOMIC_ENERGIES: self.out(h).squeeze(-1)}


def prepared(n: int, seed: int = 0) -> list:
    """``n`` EMT structures prepared for training (float32, neighbour lists)."""
    need = {keys.FORCES: 20.0, keys.STRESS: 5.0}
    return dataset.prepare(emt_structures(n, seed), range(n), CUTOFF, need, "test")


def make_trainer(run_dir: Path, train: list, val: list, dist: DistInfo | None = None,
                 **options) -> Trainer:
    """A Trainer of :class:`TinyModel` with seeded weights and fitted normalisation."""
    cfg = TrainConfig(**{"batch_size": 4, "epochs": 2, "lr": 5e-3, "warmup": 2,
                         "save_every": 1, **options}).validate()
    species = sorted({int(z) for d in train for z in d[keys.ATOMIC_NUMBERS].tolist()})
    refs = fit_reference_energies(train, species)
    torch.manual_seed(cfg.seed)
    potential = Potential(TinyModel(), "tiny", {"cutoff": CUTOFF}, species, refs,
                          scale=energy_scale(train, refs))
    return Trainer(cfg, potential, train, val, run_dir, dist or DistInfo(),
                   torch.device("cpu"))


def final_weights(trainer: Trainer) -> dict:
    """Model weights and EMA shadow after training."""
    out = {f"w.{k}": v.clone() for k, v in trainer.potential.state_dict().items()}
    out.update({f"ema.{k}": v.clone() for k, v in trainer.ema.shadow.items()})
    return out


def _main(argv: list[str]) -> None:
    run_dir, steps = Path(argv[0]), int(argv[1])
    torch.set_num_threads(1)
    trainer = make_trainer(run_dir, prepared(16), prepared(4, seed=1), max_steps=steps,
                           epochs=100)
    trainer.prepare(resume="--resume" in argv)
    trainer.fit(lambda record: print("step", record["step"], flush=True))
    torch.save(final_weights(trainer), run_dir / "final.pt")


if __name__ == "__main__":
    _main(sys.argv[1:])
