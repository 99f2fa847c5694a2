"""Phonon frequencies of a model against its oracle (finite displacements on a supercell).

Each structure is relaxed by each calculator (FIRE + FrechetCellFilter, fmax
``FMAX`` eV/Å; the oracle's relaxation remembered per process under ``oracle_key``), then
repeated as often as the start structure needs for every cell height to be >= ``min_length``
Å (the same supercell, so the same modes, for both calculators). The force constants come from
central differences: each atom of the original cell is moved by ±``DISPLACEMENT`` Å along
x, y and z (6·n force calls on the supercell); translational symmetry of the supercell
gives the rest. The eigenvalues of the mass-weighted force-constant matrix are the
frequencies at every q-point commensurate with the supercell (Γ of the supercell, acoustic
modes included), in THz; an imaginary mode is reported as a negative frequency.

Per structure: the mean |ν_model − ν_oracle| over the modes, both sorted (THz), and the
fraction of spurious imaginary modes: max(0, n_imag,model − n_imag,oracle) / n_modes with a
mode imaginary when ν < −``IMAGINARY_TOL`` THz. Over structures (both relaxations
finite): ``phonon_freq_mae``, ``phonon_imag_fraction`` with their standard errors, and
``phonon_structures`` (count). A model relaxation that did not converge in 500 steps is
used where it stopped (its error shows); one that exploded or raised is left out of the
means and shows up in the relaxation metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from ase import Atoms, units

from mlip_scaling.scaling.downstream.relax import (
    CalcSpec,
    _build,
    _mean_se,
    oracle_relax,
    relax,
)
from mlip_scaling.scaling.eval_settings import PHONON_MIN_LENGTH as MIN_LENGTH

__all__ = ["supercell_repeats", "force_constants", "frequencies", "relaxed_frequencies",
           "phonon_pair", "phonon_errors", "DISPLACEMENT", "IMAGINARY_TOL", "MIN_LENGTH",
           "THZ"]

DISPLACEMENT = 0.01  # Å
IMAGINARY_TOL = 0.1  # THz: a mode below −this is imaginary
FMAX = 0.005  # eV/Å: relaxation before the displacements
_ORACLE_CACHE: dict[tuple, np.ndarray | None] = {}
#: sqrt(eV / (Å² amu)) in THz (ν = sqrt(λ)/2π)
THZ = math.sqrt(units._e / units._amu) * 1e10 / (2 * math.pi) / 1e12


def supercell_repeats(cell: np.ndarray, min_length: float) -> tuple[int, int, int]:
    """Repeats of ``cell`` [3,3] (Å) making every cell height >= ``min_length`` Å."""
    volume = abs(np.linalg.det(cell))
    heights = [volume / np.linalg.norm(np.cross(cell[i - 2], cell[i - 1])) for i in range(3)]
    return tuple(max(1, math.ceil(min_length / h - 1e-9)) for h in heights)


def _translation_map(reps: Sequence[int], n: int) -> np.ndarray:
    """[T, Ns]: index of supercell atom J moved back by tile T (``Atoms.repeat`` order:
    atom j of tile (m0, m1, m2) is ``((m0·M1 + m1)·M2 + m2)·n + j``)."""
    reps = np.asarray(reps)
    tiles = np.stack(np.meshgrid(*[np.arange(m) for m in reps], indexing="ij"),
                     axis=-1).reshape(-1, 3)
    flat = lambda t: (t[..., 0] * reps[1] + t[..., 1]) * reps[2] + t[..., 2]  # noqa: E731
    moved = (tiles[None, :, :] - tiles[:, None, :]) % reps  # [T, tile of J, 3]
    tile_index = flat(moved)  # [T, tiles]
    return (tile_index[:, :, None] * n + np.arange(n)[None, None, :]).reshape(len(tiles), -1)


def force_constants(atoms: Atoms, calc, reps: Sequence[int],
                    delta: float = DISPLACEMENT) -> np.ndarray:
    """Force constants [3Ns, 3Ns] (eV/Å²) of ``atoms`` repeated ``reps`` times, by central
    differences of ``calc``'s forces (6·len(atoms) supercell evaluations)."""
    n = len(atoms)
    supercell = atoms.repeat(tuple(reps))
    ns = len(supercell)
    columns = np.zeros((3 * ns, 3 * n))
    for i in range(n):
        for a in range(3):
            forces = []
            for sign in (1.0, -1.0):
                moved = supercell.copy()
                moved.positions[i, a] += sign * delta
                moved.calc = calc
                forces.append(moved.get_forces().reshape(-1))
            columns[:, 3 * i + a] = -(forces[0] - forces[1]) / (2 * delta)
    back = _translation_map(reps, n)  # Φ[J, (i,T)] = Φ[J − T, (i,0)]
    phi = np.zeros((3 * ns, 3 * ns))
    for t in range(len(back)):
        rows = (3 * back[t][:, None] + np.arange(3)[None, :]).reshape(-1)
        phi[:, 3 * t * n:3 * (t + 1) * n] = columns[rows]
    return phi


def frequencies(atoms: Atoms, calc, min_length: float = MIN_LENGTH,
                delta: float = DISPLACEMENT,
                reps: Sequence[int] | None = None) -> np.ndarray:
    """Sorted phonon frequencies [3Ns] (THz; imaginary as negative) of ``atoms`` at the
    q-points commensurate with its supercell of heights >= ``min_length`` Å (or repeated
    ``reps`` times when given)."""
    reps = reps or supercell_repeats(atoms.cell.array, min_length)
    phi = force_constants(atoms, calc, reps, delta)
    masses = np.repeat(np.tile(atoms.get_masses(), int(np.prod(reps))), 3)
    dyn = phi / np.sqrt(np.outer(masses, masses))
    eig = np.linalg.eigvalsh(0.5 * (dyn + dyn.T))
    return np.sort(np.sign(eig) * np.sqrt(np.abs(eig)) * THZ)


def relaxed_frequencies(atoms: Atoms, calc, min_length: float) -> np.ndarray | None:
    """Frequencies at ``calc``'s own relaxed structure, on the supercell that the start
    ``atoms`` needs (so two calculators have the same modes); None when the relaxation
    exploded or raised."""
    result = relax(atoms, calc, FMAX, 500)
    if result.reason and not result.reason.startswith("not converged"):
        return None
    reps = supercell_repeats(atoms.cell.array, min_length)
    return frequencies(result.atoms, calc, reps=reps)


def _oracle_frequencies(atoms: Atoms, oracle: CalcSpec, key: str | None,
                        min_length: float) -> np.ndarray | None:
    """The oracle's frequencies at its relaxed structure (None when that relaxation did not
    converge), remembered per process under ``key``."""
    ident = None if key is None else (key, min_length, atoms.numbers.tobytes(),
                                      atoms.positions.tobytes(), atoms.cell.array.tobytes())
    if ident is None or ident not in _ORACLE_CACHE:
        relaxed = oracle_relax(atoms, oracle, key, FMAX, 500, False)
        reps = supercell_repeats(atoms.cell.array, min_length)
        value = frequencies(relaxed.atoms, _build(oracle), reps=reps) if relaxed.converged \
            else None
        if ident is None:
            return value
        _ORACLE_CACHE[ident] = value
    return _ORACLE_CACHE[ident]


def phonon_pair(atoms: Atoms, model: CalcSpec, oracle: CalcSpec, min_length: float = MIN_LENGTH,
                oracle_key: str | None = None) -> dict[str, float] | None:
    """``{"mae": THz, "imag_fraction": fraction}`` of one structure; None when either
    relaxation failed outright."""
    ref = _oracle_frequencies(atoms, oracle, oracle_key, min_length)
    if ref is None:
        return None
    mine = relaxed_frequencies(atoms, _build(model), min_length)
    if mine is None or not np.isfinite(mine).all():
        return None
    spurious = max(0, int((mine < -IMAGINARY_TOL).sum()) - int((ref < -IMAGINARY_TOL).sum()))
    return {"mae": float(np.mean(np.abs(mine - ref))), "imag_fraction": spurious / len(ref)}


def phonon_errors(structures: Sequence[Atoms], model: CalcSpec, oracle: CalcSpec,
                  min_length: float = MIN_LENGTH, oracle_key: str | None = None,
                  progress: bool = False) -> dict[str, float | None]:
    """``phonon_freq_mae`` (THz), ``phonon_imag_fraction`` with standard errors, and
    ``phonon_structures`` over ``structures`` (module docstring)."""
    from mlip_scaling.progress import track

    pairs = [phonon_pair(a, model, oracle, min_length, oracle_key)
             for a in track(structures, total=len(structures), desc="phonons",
                            enabled=progress, transient=True)]
    ok = [p for p in pairs if p is not None]
    return {**_mean_se([p["mae"] for p in ok], "phonon_freq_mae"),
            **_mean_se([p["imag_fraction"] for p in ok], "phonon_imag_fraction"),
            "phonon_structures": len(ok)}
