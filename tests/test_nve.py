"""NVE energy conservation of a trained model: 2 ps at 1 fs on 64 Cu atoms (float64).

Small conservative models are trained for a few seconds on ASE-EMT Cu energies and
forces through ``Potential``: the package's ``transformer-1.2k`` preset, a hand-written
embedded-density model (any energy model wrapped by ``Potential``) and, marked slow, the
``bpnn-5.3k`` preset and a small GemNet-OC (``GEMNET_NVE``). Velocity-Verlet MD
with ``ScalingCalculator`` then must conserve the total energy: the drift (|OLS slope| of
E_total/atom vs time, first 20 % dropped) is reported in meV/atom/ps and bounded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet
from torch import nn

from mlip_scaling import keys
from mlip_scaling.calculators.ase import ScalingCalculator
from mlip_scaling.data.atomic_data import collate, from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.models.potential import Potential
from mlip_scaling.models.registry import build_model, get_preset

CUTOFF = 4.5
MAX_DRIFT = 0.05  # meV/atom/ps (measured: 1e-4 density, 5e-6 transformer-1.2k, 2e-5 bpnn-5.3k)


class DensityModel(nn.Module):
    """e_i = MLP(Σ_j φ(r_ij)) + ½ Σ_j w·φ(r_ij), φ = Bessel bases × smooth cosine cutoff."""

    direct_forces = False

    def __init__(self, cutoff: float = CUTOFF, n_basis: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer("freq", torch.arange(1, n_basis + 1) * math.pi / cutoff)
        self.embed = nn.Sequential(nn.Linear(n_basis, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.pair = nn.Linear(n_basis, 1, bias=False)

    def forward(self, data: dict) -> dict:
        r = data[keys.EDGE_LENGTHS].unsqueeze(-1)
        envelope = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1.0)
        phi = torch.sin(self.freq * r) / r * envelope
        centre = data[keys.EDGE_INDEX][0]
        n = len(data[keys.POSITIONS])
        density = torch.zeros(n, phi.shape[1], dtype=phi.dtype, device=phi.device)
        density = density.index_add(0, centre, phi)
        pair = torch.zeros(n, dtype=phi.dtype, device=phi.device)
        pair = pair.index_add(0, centre, 0.5 * self.pair(phi).squeeze(-1))
        return {keys.ATOMIC_ENERGIES: self.embed(density).squeeze(-1) + pair}


def emt_structures(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    structures = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.02, 0.02)), cubic=True) * 2
        atoms.positions += rng.normal(0.0, rng.uniform(0.03, 0.12), atoms.positions.shape)
        atoms.calc = EMT()
        atoms.get_forces()
        structures.append(atoms)
    return structures


#: a small GemNet-OC with all four interactions; edges and triplets within the first shell
GEMNET_NVE = {"cutoff": CUTOFF, "num_blocks": 1, "emb_size_atom": 8, "emb_size_edge": 8,
              "emb_size_trip_in": 4, "emb_size_trip_out": 4, "emb_size_rbf": 4,
              "emb_size_cbf": 4, "num_radial": 8, "num_spherical": 3, "cutoff_main": 3.0,
              "cutoff_qint": 2.9, "cutoff_aeaint": 3.0}


def make_model(name: str) -> tuple[nn.Module, str, dict]:
    """``(energy model, family, config)``: a package preset or a hand-written model."""
    if name == "density":
        return DensityModel(), "density", {"cutoff": CUTOFF}
    if name == "gemnet-nve":
        return build_model("gemnet", GEMNET_NVE), "gemnet", GEMNET_NVE
    family, config = get_preset(name)
    return build_model(family, config), family, config


def train(structures, name: str, steps: int, lr: float) -> Potential:
    torch.manual_seed(0)
    energies = [a.get_potential_energy() / len(a) for a in structures]
    model, family, config = make_model(name)
    potential = Potential(model, family, config, species=[29],
                          reference_energies={29: float(np.mean(energies))}, scale=0.1)
    potential = potential.float()
    nl = NeighborListTransform(config["cutoff"])
    batch = collate([nl(from_atoms(a, dtype=torch.float32)) for a in structures])
    optimizer = torch.optim.Adam(potential.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    n_atoms = batch[keys.NUM_ATOMS].float()
    for _ in range(steps):
        out = potential(batch, compute_stress=False, create_graph=True)
        e_loss = ((out[keys.ENERGY] - batch[keys.ENERGY]) / n_atoms).pow(2).mean()
        f_loss = (out[keys.FORCES] - batch[keys.FORCES]).pow(2).mean()
        loss = 10.0 * e_loss + f_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return potential.eval()


def drift_mev_per_atom_ps(times_fs: np.ndarray, e_per_atom: np.ndarray) -> float:
    """|OLS slope| of E_total/atom (eV) vs time, first 20 % dropped, in meV/atom/ps."""
    keep = times_fs >= times_fs[0] + 0.2 * (times_fs[-1] - times_fs[0])
    slope = np.polyfit(times_fs[keep] / 1000.0, e_per_atom[keep], 1)[0]
    return abs(slope) * 1000.0


@pytest.mark.parametrize(("name", "steps", "lr"),
                         [("density", 250, 2e-2), ("transformer-1.2k", 400, 2e-2),
                          pytest.param("bpnn-5.3k", 400, 2e-2, marks=pytest.mark.slow),
                          pytest.param("gemnet-nve", 400, 2e-2, marks=pytest.mark.slow)])
def test_trained_model_conserves_energy_in_nve(name, steps, lr):
    potential = train(emt_structures(12), name, steps, lr)
    check = emt_structures(4, seed=1)
    calc = ScalingCalculator(potential, device="cpu", dtype="float64")
    errors = [np.abs(r["forces"] - a.get_forces()).mean()
              for r, a in zip(calc.predict(check), check)]
    assert np.mean(errors) < 0.08, f"force MAE {np.mean(errors):.3f} eV/Å: training failed"

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 4)
    assert len(atoms) == 64
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(3))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    times, totals, temps = [], [], []

    def record() -> None:
        times.append(dyn.get_time() / units.fs)
        totals.append(atoms.get_total_energy() / len(atoms))
        temps.append(atoms.get_temperature())

    dyn.attach(record, interval=10)
    dyn.run(2000)
    times_fs, totals = np.array(times), np.array(totals)
    drift = drift_mev_per_atom_ps(times_fs, totals)
    fluctuation = 1000 * np.ptp(totals)
    print(f"{name}: NVE drift {drift:.1e} meV/atom/ps; E_total/atom range {fluctuation:.3f} meV; "
          f"<T> {np.mean(temps):.0f} K; neighbour lists built {calc._neighbors.builds}")
    assert times_fs[-1] == pytest.approx(2000.0, rel=1e-12)
    assert 150 < np.mean(temps[20:]) < 600  # equipartition: ~300 K, and no blow-up
    assert calc._neighbors.builds > 1  # the skin list was rebuilt as atoms moved
    assert drift < MAX_DRIFT
    assert fluctuation < 5.0
