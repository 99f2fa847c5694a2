"""Per-element reference energies and a per-atom energy scale from the training set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import AtomicData

__all__ = ["composition_matrix", "fit_reference_energies", "energy_scale"]


def composition_matrix(structures: Sequence[AtomicData], species: Sequence[int]) -> np.ndarray:
    """[S, len(species)] number of atoms of each element in each structure."""
    column = {int(z): k for k, z in enumerate(species)}
    counts = np.zeros((len(structures), len(species)))
    for s, data in enumerate(structures):
        zs, n = np.unique(data[keys.ATOMIC_NUMBERS].numpy(), return_counts=True)
        counts[s, [column[int(z)] for z in zs]] = n
    return counts


def fit_reference_energies(
    structures: Sequence[AtomicData], species: Sequence[int]
) -> dict[int, float]:
    """``{Z: E_Z}`` (eV) minimising ``Σ_s (E_s − Σ_Z n_sZ E_Z)²`` (minimum-norm solution)."""
    counts = composition_matrix(structures, species)
    energies = np.array([float(d[keys.ENERGY].reshape(-1)[0]) for d in structures])
    coef, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {int(z): float(e) for z, e in zip(species, coef)}


def energy_scale(structures: Sequence[AtomicData], references: dict[int, float]) -> float:
    """Per-atom energy scale (eV): RMS force component (eV/Å × 1 Å) when forces are labelled,
    else the standard deviation of the residual energy per atom; 1.0 if both vanish."""
    forces = [d[keys.FORCES].numpy().ravel() for d in structures if keys.FORCES in d]
    if forces:
        rms = float(np.sqrt(np.mean(np.concatenate(forces) ** 2)))
        if rms > 1e-8:
            return rms
    residual = []
    for data in structures:
        numbers = data[keys.ATOMIC_NUMBERS].numpy()
        ref = sum(references[int(z)] for z in numbers)
        residual.append((float(data[keys.ENERGY].reshape(-1)[0]) - ref) / len(numbers))
    std = float(np.std(residual)) if len(residual) > 1 else 0.0
    return std if std > 1e-8 else 1.0
