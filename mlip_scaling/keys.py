"""Every field name of the atomic-data dict, with its shape and unit.

A single structure and a batch of structures are both plain ``dict[str, Tensor]``.
Shapes use ``N`` = atoms (in the structure or the whole batch), ``E`` = edges,
``B`` = structures in the batch (1 for a single structure).
Per-structure fields always keep their leading ``B`` axis so that collating is
concatenation.
"""

from __future__ import annotations

from typing import Final

# --- inputs ------------------------------------------------------------------
POSITIONS: Final = "positions"  # [N, 3] float, Å (Cartesian)
ATOMIC_NUMBERS: Final = "atomic_numbers"  # [N] long
CELL: Final = "cell"  # [B, 3, 3] float, Å, rows are lattice vectors (zeros if no cell)
PBC: Final = "pbc"  # [B, 3] bool, periodicity along each lattice vector

# --- graph (from the neighbour-list transform) ----------------------------------
EDGE_INDEX: Final = "edge_index"  # [2, E] long; row 0 = centre i, row 1 = neighbour j
EDGE_CELL_SHIFT: Final = "edge_cell_shift"  # [E, 3] float (integer values): image of j
EDGE_VECTORS: Final = "edge_vectors"  # [E, 3] float, Å: r_j + shift @ cell - r_i
EDGE_LENGTHS: Final = "edge_lengths"  # [E] float, Å

# --- batching -------------------------------------------------------------------
BATCH: Final = "batch"  # [N] long, index of the structure each atom belongs to
NUM_ATOMS: Final = "num_atoms"  # [B] long, atoms per structure
STRAIN: Final = "strain"  # [B, 3, 3] float, symmetric displacement gradient (internal)

# --- labels and predictions (same names; labels live in the data dict) ----------
ENERGY: Final = "energy"  # [B] float, eV (total energy of each structure)
FORCES: Final = "forces"  # [N, 3] float, eV/Å
STRESS: Final = "stress"  # [B, 3, 3] float, eV/Å^3, ASE sign (positive = tensile)
ATOMIC_ENERGIES: Final = "energies"  # [N] float, eV (per-atom contributions)
HAS_STRESS: Final = "has_stress"  # [B] bool, whether the structure carries a stress label

# --- bookkeeping ----------------------------------------------------------------
STRUCTURE_INDEX: Final = "structure_index"  # [B] long, index in the source dataset

#: Fields with one entry per atom (concatenated along dim 0 when collating).
NODE_FIELDS: Final = (POSITIONS, ATOMIC_NUMBERS, FORCES, ATOMIC_ENERGIES)
#: Fields with one entry per structure (concatenated along dim 0 when collating).
GRAPH_FIELDS: Final = (CELL, PBC, ENERGY, STRESS, NUM_ATOMS, STRUCTURE_INDEX)
#: Fields with one entry per edge.
EDGE_FIELDS: Final = (EDGE_CELL_SHIFT, EDGE_VECTORS, EDGE_LENGTHS)
#: Labels a dataset may carry.
LABEL_FIELDS: Final = (ENERGY, FORCES, STRESS)
#: Float fields whose dtype follows the model dtype.
FLOAT_FIELDS: Final = (POSITIONS, CELL, EDGE_CELL_SHIFT, ENERGY, FORCES, STRESS)
