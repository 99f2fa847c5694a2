"""Agreement of imported OMat24-shaped EquiformerV2 models with fairchem-core 1.10.0.

For random-weight fairchem models of the eqV2 S and M shapes (8/10 layers, 128 channels,
cutoff 12 Å, 20 neighbours, 18x18 grids), prints on three periodic cells (float64):
fairchem's seed-to-seed spread with its own random edge frames, and the difference
between fairchem with the package's frame injected and the imported model. Runs in the
fairchem virtual environment (see make_fairchem_fixtures.py)::

    PYTHONPATH=. /work/fairchem-venv/bin/python benchmarks/fairchem_agreement.py --shapes S M
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.stress import voigt_notation

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fairchem_fixtures as fx  # noqa: E402

SHAPES = {"S": (8, 4, 2), "M": (10, 6, 4), "L": (20, 6, 3)}


def _config(shape: str) -> dict:
    layers, lmax, mmax = SHAPES[shape]
    return {"max_neighbors": 20, "max_radius": 12.0, "max_num_elements": 96,
            "num_layers": layers, "sphere_channels": 128, "attn_hidden_channels": 64,
            "num_heads": 8, "attn_alpha_channels": 64, "attn_value_channels": 16,
            "ffn_hidden_channels": 128, "lmax_list": [lmax], "mmax_list": [mmax],
            "grid_resolution": 18, "edge_channels": 128}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _hydra(name: str):
    """fairchem's HydraModel of config ``name`` and its trainer-style model config."""
    from fairchem.core.models.base import HydraModel
    from fairchem.core.models.equiformer_v2 import equiformer_v2  # noqa: F401 (registers)
    from fairchem.core.models.equiformer_v2.heads import rank2  # noqa: F401 (registers)

    cfg = fx.build_fairchem_model(name)
    model = HydraModel(backbone=copy.deepcopy(cfg["backbone"]), heads=copy.deepcopy(cfg["heads"]),
                       otf_graph=True, pass_through_head_outputs=True)
    return model, cfg


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


def measure(shape: str) -> None:
    fx.CONFIGS[shape] = _config(shape)
    torch.manual_seed(0)
    model, model_cfg = _hydra(shape)
    model = model.double().eval()
    fx.randomize(model, 11)
    norms, refs = _normalizers_and_refs()
    atoms = fx.structures()
    from fairchem.core.models.equiformer_v2 import equiformer_v2 as fc_model
    from fairchem.core.models.equiformer_v2 import so3 as fc_so3

    originals = (fc_model.init_edge_rot_mat, fc_so3.SO3_Rotation.RotationToWignerDMatrix)
    with torch.no_grad():
        runs = []
        for seed in (0, 1):  # fairchem's own random edge frames
            torch.manual_seed(seed)
            runs.append(fairchem_outputs(model, atoms, norms, refs))
        fx.inject_package_frame()
        start = time.perf_counter()
        same_frame = fairchem_outputs(model, atoms, norms, refs)
        seconds = time.perf_counter() - start
    fc_model.init_edge_rot_mat, fc_so3.SO3_Rotation.RotationToWignerDMatrix = originals
    ckpt = {"state_dict": {"module." + k: v for k, v in model.state_dict().items()},
            "config": {"model": model_cfg},
            "normalizers": {k: v.state_dict() for k, v in norms.items()},
            "elementrefs": {k: v.state_dict() for k, v in refs.items()}}
    from mlip_scaling.calculators.ase import ScalingCalculator
    from mlip_scaling.checkpoint import potential_from_dict
    from mlip_scaling.models.equiformer_v2.fairchem_import import convert_fairchem

    potential = potential_from_dict(convert_fairchem(copy.deepcopy(ckpt))).double().eval()
    results = ScalingCalculator(potential, device="cpu", dtype="float64").predict(atoms)
    table = refs["energy"].element_references
    ref_sum = torch.stack([table[torch.from_numpy(a.numbers)].sum() for a in atoms])
    energy = torch.tensor(np.array([float(r["energy"]) for r in results])) - ref_sum
    fc_energy = [run["energy"] - ref_sum for run in (*runs, same_frame)]  # model part only
    forces = torch.tensor(np.concatenate([r["forces"] for r in results]))
    voigt = voigt_notation  # ASE's Voigt order of the 3x3 indices
    stress = torch.tensor(np.array([r["stress"] for r in results]))
    want = torch.stack([same_frame["stress"][:, i, j] for i, j in voigt], dim=1)
    n_params = sum(p.numel() for p in potential.parameters())
    print(f"eqV2-{shape}-shaped, {n_params:,} parameters, fairchem forward {seconds:.1f} s")
    print(f"  fairchem seed-to-seed: energy {_rel(fc_energy[0], fc_energy[1]):.2e}"
          f"  forces {_rel(runs[0]['forces'], runs[1]['forces']):.2e}"
          f"  stress {_rel(runs[0]['stress'], runs[1]['stress']):.2e}"
          "  (max |difference| / max |value|; energies without element references)")
    print(f"  imported vs fairchem, same frame: energy {_rel(energy, fc_energy[2]):.2e}"
          f"  forces {_rel(forces, same_frame['forces']):.2e}  stress {_rel(stress, want):.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["S"], choices=list(SHAPES))
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    fx.install_torch_scatter_stand_in()
    fx.float64_radius_graph()
    for shape in args.shapes:
        measure(shape)


if __name__ == "__main__":
    main()
