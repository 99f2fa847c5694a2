"""Make ``tests/data/fairchem/``: random-weight checkpoints in fairchem-core 1.10's layout
and fairchem's own energies, forces and stress on a few periodic cells (float64).

Runs with fairchem-core 1.10.0 in its own virtual environment, outside the repository::

    python3 -m venv /work/fairchem-venv
    /work/fairchem-venv/bin/pip install torch==2.13.0
    /work/fairchem-venv/bin/pip install --no-deps fairchem-core==1.10.0
    /work/fairchem-venv/bin/pip install "numpy<2" ase e3nn pyyaml tqdm lmdb \\
        torch_geometric huggingface_hub pydantic
    PYTHONPATH=. /work/fairchem-venv/bin/python benchmarks/make_fairchem_fixtures.py

torch-scatter (only needed by fairchem's rank-2 stress head and graph helpers) is
replaced by a pure-torch stand-in installed into ``sys.modules`` by this script only.
Only ``tiny`` (2 layers, lmax 2 / mmax 1, 0.5 MB) is committed; ``--configs small`` (1 layer,
lmax 3 / mmax 2, 0.7 MB: fairchem stores its S² grid matrices once per block) stays out of
the 1 MB fixture budget. fairchem's edge frame uses a random vector; the package's
deterministic frame (and its Wigner matrices) is injected so both compute the same
function. Weights are stored in float32 like real checkpoints; outputs are float64.
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
        torch.set_default_dtype(torch.float32)
        try:
            edge_index, offsets, neighbors = original(
                copy32, radius, max_num_neighbors_threshold, *args, **kwargs
            )
        finally:
            torch.set_default_dtype(torch.float64)
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


def build_fairchem_model(name: str):
    """fairchem's HydraModel of config ``name`` and its trainer-style model config."""
    from fairchem.core.models.base import HydraModel
    from fairchem.core.models.equiformer_v2 import equiformer_v2  # noqa: F401 (registers)
    from fairchem.core.models.equiformer_v2.heads import rank2  # noqa: F401 (registers)

    backbone = {**_BACKBONE, **CONFIGS[name]}
    model = HydraModel(backbone=copy.deepcopy(backbone), heads=copy.deepcopy(_HEADS),
                       otf_graph=True, pass_through_head_outputs=True)
    return model, {"name": "hydra", "backbone": backbone, "heads": _HEADS,
                   "otf_graph": True, "pass_through_head_outputs": True}


def randomize(model, seed: int) -> None:
    """Perturb every parameter (norm weights and zero biases too), then round to float32."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            scale = 0.2 * max(float(p.abs().mean()), 0.05)
            p.copy_((p + scale * noise).float().double())


def structures():
    """Three periodic cells: perturbed fcc Cu, exact rock salt (neighbour ties), triclinic."""
    from ase.build import bulk

    rng = np.random.default_rng(7)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.positions += rng.normal(0.0, 0.03, cu.positions.shape)
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    cell = np.array([[3.1, 0.0, 0.0], [0.4, 3.3, 0.0], [-0.3, 0.5, 3.6]])
    from ase import Atoms

    tri = Atoms("FeOLi", scaled_positions=rng.random((3, 3)), cell=cell, pbc=True)
    return [cu, nacl, tri]


def _batch(atoms_list):
    from torch_geometric.data import Batch, Data

    items = []
    for atoms in atoms_list:
        n = len(atoms)
        items.append(Data(
            pos=torch.tensor(atoms.positions, dtype=torch.float64),
            cell=torch.tensor(np.array(atoms.cell), dtype=torch.float64)[None],
            atomic_numbers=torch.tensor(atoms.numbers, dtype=torch.long),
            natoms=torch.tensor([n]), pbc=torch.tensor([[True, True, True]]),
            fixed=torch.zeros(n, dtype=torch.long), tags=torch.zeros(n, dtype=torch.long),
        ))
    return Batch.from_data_list(items)


def _normalizers_and_refs():
    from fairchem.core.modules.normalization.element_references import LinearReferences
    from fairchem.core.modules.normalization.normalizer import Normalizer

    gen = torch.Generator().manual_seed(3)
    refs = torch.zeros(100, dtype=torch.float64)
    refs[1:] = -5.0 + torch.rand(99, generator=gen, dtype=torch.float64)
    norms = {
        "energy": Normalizer(mean=0.0, rmsd=1.25),
        "forces": Normalizer(mean=0.0, rmsd=1.25),
        "stress_isotropic": Normalizer(mean=-0.0125, rmsd=0.0425),
        "stress_anisotropic": Normalizer(mean=0.0, rmsd=0.0317),
    }
    for norm in norms.values():  # values as a float32 checkpoint stores them
        for buf in norm.buffers():
            buf.copy_(buf.float().double())
    return norms, {"energy": LinearReferences(element_references=refs.float().double())}


def fairchem_outputs(model, atoms_list, norms, refs) -> dict:
    """Energies [B], forces [N, 3], stress [B, 3, 3] and its parts, as fairchem's trainer."""
    from fairchem.core.common.utils import cg_change_mat, irreps_sum

    batch = _batch(atoms_list)
    out = model(batch)
    energy = refs["energy"](norms["energy"](out["energy"]), batch, reshaped=False)
    forces = norms["forces"](out["forces"])
    iso = norms["stress_isotropic"](out["stress_isotropic"]).reshape(-1, 1)
    aniso = norms["stress_anisotropic"](out["stress_anisotropic"]).reshape(-1, 5)
    irreps = torch.zeros(len(atoms_list), irreps_sum(2), dtype=torch.float64)
    irreps[:, :1], irreps[:, irreps_sum(1):] = iso, aniso
    stress = torch.einsum("ba, cb->ca", cg_change_mat(2).double(), irreps).reshape(-1, 3, 3)
    return {"energy": energy.detach(), "forces": forces.detach(), "stress": stress.detach(),
            "stress_isotropic": iso[:, 0].detach(), "stress_anisotropic": aniso.detach()}


def checkpoint(name: str) -> tuple[dict, dict]:
    """(fairchem-layout checkpoint, reference outputs) of config ``name``."""
    torch.manual_seed(0)
    model, model_cfg = build_fairchem_model(name)
    model = model.double().eval()
    randomize(model, 11)
    state = {"module." + k: v.detach().float().clone() for k, v in model.state_dict().items()}
    randomize(model, 12)  # the EMA weights fairchem predicts with
    shadow = [p.detach().float().clone() for p in model.parameters() if p.requires_grad]
    norms, refs = _normalizers_and_refs()
    atoms_list = structures()
    with torch.no_grad():
        ref = fairchem_outputs(model, atoms_list, norms, refs)
    ckpt = {
        "state_dict": state,
        "normalizers": {k: {n: t.float() for n, t in v.state_dict().items()}
                        for k, v in norms.items()},
        "elementrefs": {k: {n: t.float() for n, t in v.state_dict().items()}
                        for k, v in refs.items()},
        "config": {"trainer": "equiformerv2_forces", "model": model_cfg,
                   "optim": {"ema_decay": 0.999, "batch_size": 8},
                   "outputs": {"energy": {"level": "system"}, "forces": {"level": "atom"}}},
        "val_metrics": {"energy_mae": {"metric": np.float64(0.25), "numel": np.int64(10)}},
        "amp": None, "epoch": 1.0, "step": 10,
        "ema": {"decay": 0.999, "num_updates": 10, "shadow_params": shadow,
                "collected_params": []},
    }
    reference = {
        "numbers": [a.numbers.tolist() for a in atoms_list],
        "positions": [torch.tensor(a.positions) for a in atoms_list],
        "cells": [torch.tensor(np.array(a.cell)) for a in atoms_list],
        **ref,
    }
    return ckpt, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--configs", nargs="+", default=["tiny"], choices=list(CONFIGS))
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    install_torch_scatter_stand_in()
    inject_package_frame()
    float64_radius_graph()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.configs:
        ckpt, reference = checkpoint(name)
        torch.save(ckpt, args.out / f"{name}_fairchem.pt")
        torch.save(reference, args.out / f"{name}_reference.pt")
        print(name, "energy", reference["energy"].tolist())


if __name__ == "__main__":
    main()
