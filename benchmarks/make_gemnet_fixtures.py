"""Make the GemNet-OC files of ``tests/data/fairchem/``: checkpoints written by fairchem-core
1.10's own trainer (``OCPTrainer.save``, after a few real training steps of a tiny
``gemnet_oc`` model) and the energies and forces that fairchem's own ``OCPCalculator``
predicts from each file (float64).

Runs with fairchem-core 1.10.0 in its own virtual environment (see
``make_fairchem_fixtures.py``; that one's venv serves), one command::

    PYTHONPATH=. /work/fcvenv/bin/python benchmarks/make_gemnet_fixtures.py

Two models, both with all four of GemNet-OC's optional interactions (quadruplets,
atom-to-edge, edge-to-atom, atom-to-atom), four different cutoffs and active neighbour caps:
``gemnet_direct`` (direct force head, ``forces_coupled``, ``sbf: legendre_outer``) and
``gemnet_grad`` (``direct_forces: False``: forces are fairchem's ``-dE/dpos``, ``sbf:
spherical_harmonics``). Per model: ``<name>_training.pt`` (``save(training_state=True)``),
``<name>_inference.pt`` (``training_state=False``: EMA in ``state_dict``) and
``<name>_reference.pt`` with ``OCPCalculator``'s outputs on both files for two periodic
cells (rattled Cu-Ni fcc, triclinic Cu-Ni-O). fairchem's GemNet-OC has no stress output.

Stand-ins and float64 changes: ``torch_scatter`` and ``torch_sparse`` are replaced by
pure-torch stand-ins (``SparseTensor`` below: row selection, COO access, values);
fairchem's float32 graph arithmetic (image offsets) is made float64 as for EquiformerV2;
the ``.float()`` casts before GemNet-OC's last energy and force layers are skipped for
float64 tensors while predicting; the float32-stored Gaussian offsets are recomputed in
float64 after loading. The ScaleFactor values are set to random numbers in [0.5, 1.5]
(fitted scale factors live in the state dict). Weights stay as the trainer stored them
(float32).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fairchem_fixtures import (  # noqa: E402
    float64_radius_graph,
    install_torch_scatter_stand_in,
    randomize,
)

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "fairchem"

_COMMON = {
    "num_spherical": 3,
    "num_radial": 5,
    "num_blocks": 2,
    "emb_size_atom": 8,
    "emb_size_edge": 8,
    "emb_size_trip_in": 4,
    "emb_size_trip_out": 4,
    "emb_size_quad_in": 2,
    "emb_size_quad_out": 3,
    "emb_size_aint_in": 4,
    "emb_size_aint_out": 3,
    "emb_size_rbf": 4,
    "emb_size_cbf": 3,
    "emb_size_sbf": 5,
    "num_before_skip": 1,
    "num_after_skip": 1,
    "num_concat": 1,
    "num_atom": 1,
    "num_output_afteratom": 1,
    "num_atom_emb_layers": 1,
    "num_global_out_layers": 1,
    "regress_forces": True,
    "use_pbc": True,
    "cutoff": 4.0,
    "cutoff_qint": 3.3,
    "cutoff_aeaint": 3.7,
    "cutoff_aint": 4.6,
    "max_neighbors": 14,
    "max_neighbors_qint": 8,
    "max_neighbors_aeaint": 10,
    "max_neighbors_aint": 20,
    "enforce_max_neighbors_strictly": False,
    "rbf": {"name": "gaussian"},
    "envelope": {"name": "polynomial", "exponent": 5},
    "cbf": {"name": "spherical_harmonics"},
    "extensive": True,
    "output_init": "HeOrthogonal",
    "activation": "silu",
    "quad_interaction": True,
    "atom_edge_interaction": True,
    "edge_atom_interaction": True,
    "atom_interaction": True,
    "scale_basis": False,
    "qint_tags": [0, 1, 2],
    "num_elements": 30,
    "otf_graph": True,
}
#: name -> model settings beyond ``_COMMON``
CONFIGS = {
    "gemnet_direct": {
        "direct_forces": True,
        "forces_coupled": True,
        "sbf": {"name": "legendre_outer"},
    },
    "gemnet_grad": {"direct_forces": False, "sbf": {"name": "spherical_harmonics"}},
}


_GEMNET_MODULE = "fairchem.core.models.gemnet_oc"


class SparseTensor:
    """Pure-torch stand-in for the parts of ``torch_sparse.SparseTensor`` GemNet-OC uses:
    COO entries sorted by (row, col), row selection ``adj[index]``, ``storage.row()``,
    ``storage.value()``, ``coo()``, ``set_value_`` and ``sparse_sizes()``."""

    def __init__(self, row, col, value=None, sparse_sizes=None, is_sorted=False, **_):
        if not is_sorted:
            order = torch.argsort(row * int(sparse_sizes[1]) + col, stable=True)
            row, col = row[order], col[order]
            value = None if value is None else value[order]
        self._row, self._col, self._value = row, col, value
        self._sizes = (int(sparse_sizes[0]), int(sparse_sizes[1]))
        self.storage = self

    def row(self):
        return self._row

    def col(self):
        return self._col

    def value(self):
        return self._value

    def coo(self):
        return self._row, self._col, self._value

    def sparse_sizes(self):
        return self._sizes

    def set_value_(self, value, layout=None):
        self._value = value
        return self

    def __getitem__(self, index):
        counts = torch.bincount(self._row, minlength=self._sizes[0])
        starts = torch.cumsum(counts, 0) - counts
        picked = counts[index]
        new_row = torch.repeat_interleave(torch.arange(len(index)), picked)
        first = torch.repeat_interleave(torch.cumsum(picked, 0) - picked, picked)
        pos = (
            torch.repeat_interleave(starts[index], picked) + torch.arange(int(picked.sum())) - first
        )
        value = None if self._value is None else self._value[pos]
        return SparseTensor(
            new_row, self._col[pos], value, (len(index), self._sizes[1]), is_sorted=True
        )


def install_torch_sparse_stand_in() -> None:
    module = types.ModuleType("torch_sparse")
    module.SparseTensor = SparseTensor
    sys.modules["torch_sparse"] = module


@contextlib.contextmanager
def float64_kept():
    """``Tensor.float()`` called from fairchem's GemNet-OC module (its last energy and force
    layers) leaves float64 tensors as they are."""
    original = torch.Tensor.float

    def keep(self, *args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if self.dtype == torch.float64 and caller.startswith(_GEMNET_MODULE):
            return self
        return original(self, *args, **kwargs)

    torch.Tensor.float = keep
    try:
        yield
    finally:
        torch.Tensor.float = original


def structures():
    """Two periodic cells: rattled fcc Cu-Ni (8 atoms), triclinic Cu-Ni-O (4 atoms)."""
    from ase import Atoms
    from ase.build import bulk

    rng = np.random.default_rng(11)
    cuni = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    cuni.numbers[[1, 4, 6]] = 28
    cuni.positions += rng.normal(0.0, 0.08, cuni.positions.shape)
    cell = np.array([[3.4, 0.0, 0.0], [0.5, 3.2, 0.0], [-0.4, 0.6, 3.5]])
    tri = Atoms("CuNiOCu", scaled_positions=rng.random((4, 3)), cell=cell, pbc=True)
    return [cuni, tri]


def _write_training_set(path: Path) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.db import connect

    rng = np.random.default_rng(5)
    with connect(path) as db:
        for atoms in structures():
            atoms.calc = SinglePointCalculator(
                atoms,
                energy=-4.0 * len(atoms) + rng.normal(),
                forces=rng.normal(0.0, 0.5, (len(atoms), 3)),
            )
            db.write(atoms)


def _trainer_config(name: str, run_dir: Path) -> dict:
    """Keyword arguments of fairchem's ``ocp`` (S2EF) trainer."""
    refs = torch.zeros(100)
    refs[1:] = -5.0 + torch.rand(99, generator=torch.Generator().manual_seed(3))
    torch.save({"element_references": refs}, run_dir / "refs.pt")
    _write_training_set(run_dir / "train.db")
    model = {"name": "gemnet_oc", **_COMMON, **CONFIGS[name]}
    return {
        "task": {},
        "model": model,
        "outputs": {
            "energy": {"level": "system"},
            "forces": {"level": "atom", "train_on_free_atoms": True, "eval_on_free_atoms": True},
        },
        "dataset": {
            "train": {
                "format": "ase_db",
                "src": str(run_dir / "train.db"),
                "a2g_args": {"r_energy": True, "r_forces": True},
                "transforms": {
                    "element_references": {"energy": {"file": str(run_dir / "refs.pt")}},
                    "normalizer": {
                        "energy": {"mean": 0.0, "rmsd": 1.25},
                        "forces": {"mean": 0.0, "rmsd": 1.25},
                    },
                },
            }
        },
        "optimizer": {
            "batch_size": 1,
            "eval_batch_size": 1,
            "num_workers": 0,
            "optimizer": "SGD",
            "optimizer_params": {},
            "lr_initial": 0.01,
            "warmup_steps": 2,
            "warmup_factor": 0.2,
            "lr_gamma": 0.1,
            "lr_milestones": [100],  # fairchem's default warmup schedule
            "max_epochs": 2,
            "clip_grad_norm": 10.0,
            "ema_decay": 0.9,
            "checkpoint_every": -1,
        },
        "loss_functions": [
            {"energy": {"fn": "per_atom_mae", "coefficient": 1}},
            {"forces": {"fn": "l2mae", "coefficient": 1}},
        ],
        "evaluation_metrics": {
            "metrics": {"energy": ["mae"], "forces": ["mae"]},
            "primary_metric": "energy_mae",
        },
        "identifier": name,
        "local_rank": 0,
        "run_dir": str(run_dir),
        "is_debug": False,
        "seed": 0,
        "logger": "tensorboard",
        "cpu": True,
        "name": "s2ef",
    }


def _set_scale_factors(model, seed: int) -> None:
    from fairchem.core.modules.scaling import ScaleFactor

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ScaleFactor):
                module.scale_factor.fill_(0.5 + float(torch.rand((), generator=gen)))


def train_and_save(name: str, run_dir: Path) -> tuple[Path, Path]:
    """Train a random-weight model a few steps with fairchem's trainer and save both layouts."""
    from fairchem.core.common.registry import registry
    from fairchem.core.common.utils import setup_imports

    setup_imports()
    torch.set_default_dtype(torch.float32)
    trainer = registry.get_trainer_class("ocp")(**_trainer_config(name, run_dir))
    randomize(trainer.model, 11)
    _set_scale_factors(trainer.model, 13)
    trainer.ema.shadow_params = [
        p.detach().clone() for p in trainer.model.parameters() if p.requires_grad
    ]
    randomize(trainer.model, 12)
    _set_scale_factors(trainer.model, 13)
    trainer.train()
    metrics = {"energy_mae": {"metric": np.float64(0.25), "numel": np.int64(2)}}
    training = Path(trainer.save(metrics, checkpoint_file="training.pt", training_state=True))
    inference = Path(trainer.save(metrics, checkpoint_file="inference.pt", training_state=False))
    return training, inference


def calculator_outputs(path: Path, atoms_list) -> dict:
    """fairchem's ``OCPCalculator`` on ``path``: energies [B], forces [N, 3] (float64)."""
    from fairchem.core.common.registry import registry
    from fairchem.core.common.relaxation.ase_utils import OCPCalculator
    from fairchem.core.datasets import data_list_collater

    torch.set_default_dtype(torch.float64)
    calc = OCPCalculator(checkpoint_path=str(path), trainer="ocp", cpu=True, seed=0)
    model = calc.trainer.model
    cfg = copy.deepcopy(calc.trainer.config["model"])
    fresh = registry.get_model_class(cfg.pop("name"))(**cfg)
    with torch.no_grad():
        for (bname, buf), (fname, exact) in zip(model.named_buffers(), fresh.named_buffers()):
            assert bname == fname and buf.shape == exact.shape, (bname, fname)
            if buf.is_floating_point():
                assert torch.allclose(buf, exact, rtol=1e-6, atol=1e-6), bname
                buf.copy_(exact)
    out = {"energy": [], "forces": []}
    for atoms in atoms_list:
        data = calc.a2g.convert(atoms)
        data.pos = torch.tensor(atoms.positions, dtype=torch.float64)
        data.cell = torch.tensor(np.array(atoms.cell), dtype=torch.float64)[None]
        batch = data_list_collater([data], otf_graph=True)
        with float64_kept():
            pred = calc.trainer.predict(batch, per_image=False, disable_tqdm=True)
        out["energy"].append(pred["energy"].reshape(()).double())
        out["forces"].append(pred["forces"].double())
    return {
        "energy": torch.stack(out["energy"]).detach(),
        "forces": torch.cat(out["forces"]).detach(),
    }


def main() -> None:
    import shutil
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    load = torch.load  # fairchem 1.10 targets torch 2.4, whose torch.load unpickled fully
    torch.load = lambda *a, **k: load(*a, **{"weights_only": False, **k})
    install_torch_scatter_stand_in()
    install_torch_sparse_stand_in()
    float64_radius_graph()
    args.out.mkdir(parents=True, exist_ok=True)
    atoms_list = structures()
    for name in args.configs:
        with tempfile.TemporaryDirectory() as tmp:
            training, inference = train_and_save(name, Path(tmp))
            reference = {
                "numbers": [a.numbers.tolist() for a in atoms_list],
                "positions": [torch.tensor(a.positions) for a in atoms_list],
                "cells": [torch.tensor(np.array(a.cell)) for a in atoms_list],
                "training": calculator_outputs(training, atoms_list),
                "inference": calculator_outputs(inference, atoms_list),
            }
            shutil.copyfile(training, args.out / f"{name}_training.pt")
            shutil.copyfile(inference, args.out / f"{name}_inference.pt")
        torch.save(reference, args.out / f"{name}_reference.pt")
        for layout in ("training", "inference"):
            print(name, layout, "energy", reference[layout]["energy"].tolist())


if __name__ == "__main__":
    main()
