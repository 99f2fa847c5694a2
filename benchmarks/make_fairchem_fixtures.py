"""Make ``tests/data/fairchem/``: checkpoints written by fairchem-core 1.10's own trainer
(``BaseTrainer.save``, after a few real training steps) and the energies, forces and stress
that fairchem's own ``OCPCalculator`` predicts from each file (float64).

Runs with fairchem-core 1.10.0 in its own virtual environment, outside the repository, e.g.
one that sees the package's venv for torch/numpy/ase/e3nn::

    python3 -m venv /tmp/fcvenv
    echo $PWD/.venv/lib/python3.11/site-packages > /tmp/fcvenv/lib/python3.11/site-packages/x.pth
    /tmp/fcvenv/bin/pip install --no-deps fairchem-core==1.10.0
    /tmp/fcvenv/bin/pip install torch_geometric huggingface_hub lmdb pydantic numba \\
        submitit wandb tensorboard torchtnt
    PYTHONPATH=. /tmp/fcvenv/bin/python benchmarks/make_fairchem_fixtures.py

Two files per config, both from one trainer after training on three labelled cells:
``<name>_training.pt`` (``save(training_state=True)``: live weights in ``state_dict``, EMA in
``ema.shadow_params``, optimizer state) and ``<name>_inference.pt`` (``training_state=False``:
EMA copied into ``state_dict``, no ``ema`` key). ``<name>_reference.pt`` holds
``OCPCalculator``'s outputs for each file. torch-scatter is replaced by a pure-torch
stand-in; fairchem's random edge frame by the package's deterministic one; fairchem's
float32 graph arithmetic (image offsets) and float32-stored constant buffers (S² grids,
Gaussian offsets, recomputed in float64 after loading) are made float64, so that both sides
compute the same float64 function. Weights stay as the trainer stored them (float32).
"""

from __future__ import annotations

import argparse
import copy
import sys
import types
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "fairchem"

_BACKBONE = {
    "model": "equiformer_v2_backbone",
    "use_pbc": True,
    "use_pbc_single": True,
    "otf_graph": True,
    "num_sphere_samples": 128,
    "use_atom_edge_embedding": True,
    "share_atom_edge_embedding": False,
    "use_m_share_rad": False,
    "distance_function": "gaussian",
    "num_distance_basis": 512,
    "attn_activation": "silu",
    "use_s2_act_attn": False,
    "use_attn_renorm": True,
    "ffn_activation": "silu",
    "use_gate_act": False,
    "use_grid_mlp": True,
    "use_sep_s2_act": True,
    "alpha_drop": 0.1,
    "drop_path_rate": 0.1,
    "proj_drop": 0.0,
    "weight_init": "uniform",
    "norm_type": "layer_norm_sh",
    "enforce_max_neighbors_strictly": False,
    "avg_num_nodes": 31.16592360068011,
    "avg_degree": 61.94676351484548,
    "regress_forces": True,
}

_HEADS = {
    "energy": {"module": "equiformer_v2_energy_head"},
    "forces": {"module": "equiformer_v2_force_head"},
    "stress": {
        "module": "rank2_symmetric_head",
        "output_name": "stress",
        "use_source_target_embedding": True,
        "decompose": True,
    },
}

#: name -> backbone settings beyond ``_BACKBONE``
CONFIGS = {
    "tiny": {
        "max_neighbors": 6, "max_radius": 4.0, "max_num_elements": 30, "num_layers": 2,
        "sphere_channels": 4, "attn_hidden_channels": 4, "num_heads": 2,
        "attn_alpha_channels": 2, "attn_value_channels": 2, "ffn_hidden_channels": 4,
        "lmax_list": [2], "mmax_list": [1], "grid_resolution": 6, "edge_channels": 4,
    },
    "small": {
        "max_neighbors": 8, "max_radius": 4.5, "max_num_elements": 30, "num_layers": 1,
        "sphere_channels": 4, "attn_hidden_channels": 4, "num_heads": 2,
        "attn_alpha_channels": 2, "attn_value_channels": 2, "ffn_hidden_channels": 4,
        "lmax_list": [3], "mmax_list": [2], "grid_resolution": 8, "edge_channels": 4,
    },
}


def _scatter(src, index, dim=-1, out=None, dim_size=None, reduce="sum"):
    """Pure-torch ``torch_scatter.scatter`` for 1-D (or src-shaped) indices."""
    dim = dim % src.dim()
    moved = src.movedim(dim, 0)
    if index.dim() == 1:
        idx = index.view(-1, *([1] * (moved.dim() - 1))).expand_as(moved)
        flat = index
    else:
        idx = index.movedim(dim, 0)
        flat = idx[(slice(None),) + (0,) * (moved.dim() - 1)]
    size = dim_size if dim_size is not None else (int(flat.max()) + 1 if flat.numel() else 0)
    res = moved.new_zeros((size, *moved.shape[1:]))
    if reduce in ("sum", "add", "mean"):
        res = res.scatter_add(0, idx, moved)
        if reduce == "mean":
            count = moved.new_zeros(size).index_add(0, flat, moved.new_ones(len(flat)))
            res = res / count.clamp_min(1).view(-1, *([1] * (moved.dim() - 1)))
    elif reduce in ("max", "min"):
        res = res.scatter_reduce(0, idx, moved, "a" + reduce, include_self=False)
    else:
        raise ValueError(reduce)
    return res.movedim(0, dim)


def _segment_coo(src, index, out=None, dim_size=None, reduce="sum"):
    return _scatter(src, index, 0, dim_size=dim_size, reduce=reduce)


def _segment_csr(src, indptr, out=None, reduce="sum"):
    counts = indptr[1:] - indptr[:-1]
    index = torch.repeat_interleave(torch.arange(len(counts), device=src.device), counts)
    return _scatter(src, index, 0, dim_size=len(counts), reduce=reduce)


def install_torch_scatter_stand_in() -> None:
    """Put a pure-torch ``torch_scatter`` module into ``sys.modules``."""
    module = types.ModuleType("torch_scatter")
    module.scatter, module.segment_coo, module.segment_csr = _scatter, _segment_coo, _segment_csr
    sys.modules["torch_scatter"] = module
    utils = types.ModuleType("torch_scatter.utils")  # imported (not used) by other models
    utils.broadcast = lambda src, other, dim: src
    module.utils = sys.modules["torch_scatter.utils"] = utils
    import scipy.special  # sph_harm (removed in scipy 1.17) is imported by unused models

    if not hasattr(scipy.special, "sph_harm"):
        scipy.special.sph_harm = lambda m, n, theta, phi: scipy.special.sph_harm_y(n, m, phi,
                                                                                   theta)
    sparse = types.ModuleType("torch_sparse")  # imported by models that are not used here
    sparse.SparseTensor = type("SparseTensor", (), {})
    sys.modules.setdefault("torch_sparse", sparse)


def inject_package_frame() -> None:
    """Make fairchem use the package's deterministic edge frame and Wigner matrices."""
    from fairchem.core.models.equiformer_v2 import equiformer_v2 as fc_model
    from fairchem.core.models.equiformer_v2 import so3 as fc_so3

    from mlip_scaling.models.equiformer_v2.edge_frame import edge_rotation
    from mlip_scaling.models.equiformer_v2.so3 import wigner_d_blocks

    def frame(vectors):
        return edge_rotation(vectors).detach()

    def blockwise(self, rot, start_lmax, end_lmax):
        blocks = wigner_d_blocks(rot, end_lmax)[start_lmax:]
        size = sum(b.shape[1] for b in blocks)
        out = rot.new_zeros(len(rot), size, size)
        start = 0
        for b in blocks:
            end = start + b.shape[1]
            out[:, start:end, start:end] = b
            start = end
        return out.detach()

    fc_model.init_edge_rot_mat = frame
    fc_so3.SO3_Rotation.RotationToWignerDMatrix = blockwise


def float64_radius_graph() -> None:
    """fairchem builds graphs in float32 only: ``radius_graph_pbc`` runs on a float32 copy
    of positions and cell (same edges: the neighbour cap's 0.01 Å² tie tolerance is far
    above float32 rounding) and edge vectors are computed in float64."""
    from fairchem.core.models import base as fc_base

    original = fc_base.radius_graph_pbc

    def wrapped(data, radius, max_num_neighbors_threshold, *args, **kwargs):
        copy32 = types.SimpleNamespace(
            pos=data.pos.float(), cell=data.cell.float(), natoms=data.natoms, pbc=data.pbc
        )
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)
        try:
            edge_index, offsets, neighbors = original(
                copy32, radius, max_num_neighbors_threshold, *args, **kwargs
            )
        finally:
            torch.set_default_dtype(default)
        return edge_index, offsets.double(), neighbors

    def distances(pos, edge_index, cell, cell_offsets, neighbors, return_offsets=False,
                  return_distance_vec=False):
        """fairchem's ``get_pbc_distances`` without its float32 rounding of image offsets."""
        row, col = edge_index
        cell = torch.repeat_interleave(cell, neighbors.to(cell.device), dim=0)
        offsets = cell_offsets.to(cell.dtype).view(-1, 1, 3).bmm(cell).view(-1, 3)
        vectors = pos[row] - pos[col] + offsets
        lengths = vectors.norm(dim=-1)
        keep = lengths != 0
        out = {"edge_index": edge_index[:, keep], "distances": lengths[keep]}
        if return_distance_vec:
            out["distance_vec"] = vectors[keep]
        if return_offsets:
            out["offsets"] = offsets[keep]
        return out

    fc_base.radius_graph_pbc = wrapped
    fc_base.get_pbc_distances = distances


def build_fairchem_model(name: str) -> dict:
    """fairchem's trainer-style hydra model config of ``name``."""
    backbone = {**_BACKBONE, **CONFIGS[name]}
    return {"name": "hydra", "backbone": backbone, "heads": copy.deepcopy(_HEADS),
            "otf_graph": True, "pass_through_head_outputs": True}


def randomize(model, seed: int) -> None:
    """Perturb every parameter (norm weights and zero biases too) in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            scale = 0.2 * max(float(p.abs().mean()), 0.05)
            p.copy_((p.double() + scale * noise).to(p.dtype))


def structures():
    """Three periodic cells: perturbed fcc Cu, exact rock salt (neighbour ties), triclinic."""
    from ase import Atoms
    from ase.build import bulk

    rng = np.random.default_rng(7)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.positions += rng.normal(0.0, 0.03, cu.positions.shape)
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    cell = np.array([[3.1, 0.0, 0.0], [0.4, 3.3, 0.0], [-0.3, 0.5, 3.6]])
    tri = Atoms("FeOLi", scaled_positions=rng.random((3, 3)), cell=cell, pbc=True)
    return [cu, nacl, tri]


def _write_training_set(path: Path) -> None:
    """The three cells with random energy, force and stress labels, as an ASE database."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.db import connect
    from ase.stress import full_3x3_to_voigt_6_stress

    rng = np.random.default_rng(5)
    with connect(path) as db:
        for atoms in structures():
            s = rng.normal(0.0, 0.05, (3, 3))
            atoms.calc = SinglePointCalculator(
                atoms, energy=-4.0 * len(atoms) + rng.normal(),
                stress=full_3x3_to_voigt_6_stress(0.5 * (s + s.T)),
                forces=rng.normal(0.0, 0.5, (len(atoms), 3)))
            db.write(atoms)


def _trainer_config(name: str, run_dir: Path) -> dict:
    """Keyword arguments of fairchem's ``equiformerv2_forces`` trainer (OMat24-like)."""
    refs = torch.zeros(100)
    refs[1:] = -5.0 + torch.rand(99, generator=torch.Generator().manual_seed(3))
    torch.save({"element_references": refs}, run_dir / "refs.pt")
    _write_training_set(run_dir / "train.db")
    decomposition = {"stress_isotropic": {"irrep_dim": 0},
                     "stress_anisotropic": {"irrep_dim": 2}}
    return {
        "task": {}, "model": build_fairchem_model(name),
        "outputs": {
            "energy": {"level": "system"},
            "forces": {"level": "atom", "train_on_free_atoms": True,
                       "eval_on_free_atoms": True},
            "stress": {"level": "system", "irrep_dim": 2, "decomposition": decomposition},
        },
        "dataset": {"train": {
            "format": "ase_db", "src": str(run_dir / "train.db"),
            "a2g_args": {"r_energy": True, "r_forces": True, "r_stress": True},
            "transforms": {
                "decompose_tensor": {"tensor": "stress", "rank": 2,
                                     "decomposition": decomposition},
                "element_references": {"energy": {"file": str(run_dir / "refs.pt")}},
                "normalizer": {"energy": {"mean": 0.0, "rmsd": 1.25},
                               "forces": {"mean": 0.0, "rmsd": 1.25},
                               "stress_isotropic": {"mean": -0.0125, "rmsd": 0.0425},
                               "stress_anisotropic": {"mean": 0.0, "rmsd": 0.0317}},
            },
        }},
        "optimizer": {"batch_size": 1, "eval_batch_size": 1, "num_workers": 0,
                      "optimizer": "SGD", "optimizer_params": {}, "lr_initial": 0.02,
                      "scheduler": "LambdaLR",
                      "scheduler_params": {"lambda_type": "cosine", "warmup_factor": 0.2,
                                           "warmup_epochs": 0.5, "lr_min_factor": 0.1},
                      "max_epochs": 2, "clip_grad_norm": 10.0, "ema_decay": 0.9,
                      "checkpoint_every": -1},
        "loss_functions": [{"energy": {"fn": "per_atom_mae", "coefficient": 1}},
                           {"forces": {"fn": "l2mae", "coefficient": 1}},
                           {"stress_isotropic": {"fn": "mae", "coefficient": 1}},
                           {"stress_anisotropic": {"fn": "mae", "coefficient": 1}}],
        "evaluation_metrics": {"metrics": {"energy": ["mae"], "forces": ["mae"],
                                           "stress_isotropic": ["mae"],
                                           "stress_anisotropic": ["mae"]},
                               "primary_metric": "energy_mae"},
        "identifier": name, "local_rank": 0, "run_dir": str(run_dir), "is_debug": False,
        "seed": 0, "logger": "tensorboard", "cpu": True,
        "name": "s2ef",  # the task name fairchem's runner passes for this trainer
    }


def train_and_save(name: str, run_dir: Path) -> tuple[Path, Path]:
    """Train a random-weight model a few steps with fairchem's trainer and save both layouts."""
    from fairchem.core.common.registry import registry
    from fairchem.core.common.utils import setup_imports

    setup_imports()
    torch.set_default_dtype(torch.float32)
    cfg = _trainer_config(name, run_dir)
    trainer = registry.get_trainer_class("equiformerv2_forces")(**cfg)
    randomize(trainer.model, 11)  # far from fairchem's initial weights (the EMA's start)
    trainer.ema.shadow_params = [p.detach().clone() for p in trainer.model.parameters()
                                 if p.requires_grad]
    randomize(trainer.model, 12)  # the live weights move away from the EMA
    trainer.train()  # ends with save(checkpoint.pt, training_state=True)
    metrics = {"energy_mae": {"metric": np.float64(0.25), "numel": np.int64(3)}}
    training = Path(trainer.save(metrics, checkpoint_file="training.pt", training_state=True))
    inference = Path(trainer.save(metrics, checkpoint_file="inference.pt",
                                  training_state=False))
    return training, inference


def calculator_outputs(path: Path, atoms_list) -> dict:
    """fairchem's ``OCPCalculator`` on the file at ``path``: energies [B], forces [N, 3],
    stress [B, 3, 3] (float64), with constant buffers recomputed in float64."""
    from fairchem.core.common.registry import registry
    from fairchem.core.common.relaxation.ase_utils import OCPCalculator
    from fairchem.core.datasets import data_list_collater

    torch.set_default_dtype(torch.float64)
    calc = OCPCalculator(checkpoint_path=str(path), trainer="equiformerv2_forces", cpu=True,
                         seed=0)
    model = calc.trainer.model
    cfg = copy.deepcopy(calc.trainer.config["model"])
    fresh = registry.get_model_class(cfg.pop("name"))(**cfg)
    with torch.no_grad():
        for (bname, buf), (fname, exact) in zip(model.named_buffers(), fresh.named_buffers()):
            assert bname == fname and buf.shape == exact.shape, (bname, fname)
            if buf.is_floating_point():
                assert torch.allclose(buf, exact, rtol=1e-6, atol=1e-6), bname
                buf.copy_(exact)
    out = {"energy": [], "forces": [], "stress": []}
    for atoms in atoms_list:  # OCPCalculator.calculate, with positions and cell in float64
        data = calc.a2g.convert(atoms)
        data.pos = torch.tensor(atoms.positions, dtype=torch.float64)
        data.cell = torch.tensor(np.array(atoms.cell), dtype=torch.float64)[None]
        batch = data_list_collater([data], otf_graph=True)
        pred = calc.trainer.predict(batch, per_image=False, disable_tqdm=True)
        out["energy"].append(pred["energy"].reshape(()).double())
        out["forces"].append(pred["forces"].double())
        out["stress"].append(pred["stress"].double().reshape(3, 3))
    return {"energy": torch.stack(out["energy"]).detach(),
            "forces": torch.cat(out["forces"]).detach(),
            "stress": torch.stack(out["stress"]).detach()}


def main() -> None:
    import shutil
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--configs", nargs="+", default=["tiny"], choices=list(CONFIGS))
    args = parser.parse_args()
    load = torch.load  # fairchem 1.10 targets torch 2.4, whose torch.load unpickled fully
    torch.load = lambda *a, **k: load(*a, **{"weights_only": False, **k})
    install_torch_scatter_stand_in()
    inject_package_frame()
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
