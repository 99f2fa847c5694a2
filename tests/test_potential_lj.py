"""The Potential wrapper against ASE's Lennard-Jones: energy, forces and stress."""

from __future__ import annotations

import numpy as np
import torch
from ase.build import bulk, molecule
from ase.calculators.lj import LennardJones as AseLJ

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import collate, from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.models.potential import Potential


def _potential(model) -> Potential:
    return Potential(model, "lj", {"cutoff": 5.0}, species=[29]).double()


def _ase_lj(atoms):
    atoms = atoms.copy()
    atoms.calc = AseLJ(sigma=2.3, epsilon=0.1, rc=5.0, smooth=False)
    # ASE's LJ shifts the pair energy to zero at rc; undo for comparison of energies
    return atoms


def test_matches_ase_lj_periodic(lj_model):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=1)
    ref = _ase_lj(atoms)
    data = NeighborListTransform(5.0)(from_atoms(atoms))
    out = _potential(lj_model)(data)
    np.testing.assert_allclose(out[keys.FORCES].numpy(), ref.get_forces(), atol=1e-10)
    stress = out[keys.STRESS][0].numpy()
    full = ref.get_stress(voigt=False)
    np.testing.assert_allclose(stress, full, atol=1e-10)


def test_batch_mixes_periodic_and_molecule(lj_model):
    crystal = bulk("Cu", "fcc", a=3.7) * (2, 2, 2)
    crystal.rattle(0.05, seed=2)
    mol = molecule("CH4")
    mol.positions *= 1.5
    nl = NeighborListTransform(5.0)
    pot = _potential(lj_model)
    single = [pot(nl(from_atoms(a))) for a in (crystal, mol)]
    batched = pot(collate([nl(from_atoms(a)) for a in (crystal, mol)]))
    torch.testing.assert_close(
        batched[keys.ENERGY], torch.cat([s[keys.ENERGY] for s in single])
    )
    torch.testing.assert_close(
        batched[keys.FORCES], torch.cat([s[keys.FORCES] for s in single])
    )
    assert batched[keys.STRESS][1].abs().max() < 1e-12
