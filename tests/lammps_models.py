"""Small model files and structures shared by the LAMMPS tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

from mlip_scaling.checkpoint import save_potential
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model, get_preset

SPECIES = (29, 79)  # Cu, Au: the model's species order (sorted by Z)


def two_layer_model(path: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer transformer (cutoff 5 Å) on Cu and Au, with a
    repulsive reference so that MD stays bound, saved as a model file."""
    family, config = get_preset("transformer-7.0k")
    config["num_layers"] = 2
    torch.manual_seed(seed)
    model = build_model(family, config).double()
    with torch.no_grad():  # larger weights: energies that vary visibly with geometry
        for p in model.parameters():
            p.mul_(3.0)
    potential = Potential(model, family, config, SPECIES, {29: -3.5, 79: -3.8}, scale=0.2)
    return save_potential(path, potential)


def triclinic_alloy(repeat: int = 2, seed: int = 1, a: float = 3.7) -> Atoms:
    """A rattled Cu-Au fcc supercell (4 repeat³ atoms, every third Au) in a lower-triangular
    triclinic cell (LAMMPS's orientation, so no rotation is involved)."""
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(repeat)
    n = repeat * a
    atoms.set_cell([[n, 0, 0], [0.08 * n, 0.97 * n, 0], [0.05 * n, -0.07 * n, 1.03 * n]],
                   scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    atoms.numbers[::3] = 79
    return atoms


def lammps_input(data: Path, extra: str, cutoff: float = 5.0) -> str:
    """A LAMMPS input reading ``data`` (types 1 = Au, 2 = Cu) with the model fix."""
    return (f"units metal\natom_style atomic\nboundary p p p\nread_data {data}\n"
            f"pair_style zero {cutoff}\npair_coeff * *\n"
            "fix mlip all external pf/callback 1 1\n"
            "thermo_style custom step pe ke etotal press pxx pyy pzz pxy pxz pyz vol\n"
            f"{extra}\n")


def sorted_forces(lmp) -> np.ndarray:
    """LAMMPS forces [N,3] in atom-ID order."""
    n = lmp.extract_setting("nlocal")
    ids = np.asarray(lmp.numpy.extract_atom("id"))[:n].copy()
    forces = np.asarray(lmp.numpy.extract_atom("f"))[:n].copy()
    return forces[np.argsort(ids)]
