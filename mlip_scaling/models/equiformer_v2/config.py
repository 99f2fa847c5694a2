"""The hyperparameters of an EquiformerV2 model, as one frozen dataclass.

Checkpoints store them as a plain dict (``dataclasses.asdict``); the registry builds a
model with ``EquiformerV2(**that_dict)``, which checks and freezes them here.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlip_scaling.errors import ConfigError

__all__ = ["AVG_DEGREE", "AVG_NUM_NODES", "NORM_TYPES", "STRESS_HEADS", "EquiformerV2Config"]

#: fairchem's default normalisers of the energy sum and of the edge-degree embedding
AVG_NUM_NODES = 77.81317
AVG_DEGREE = 23.395238876342773
#: accepted values of ``norm_type`` and ``stress_head``
NORM_TYPES = ("rms_norm_sh", "layer_norm_sh")
STRESS_HEADS = ("equivariant", "fairchem")


@dataclass(frozen=True)
class EquiformerV2Config:
    """EquiformerV2 hyperparameters (field order = the model's positional arguments).

    Attributes:
        cutoff: interaction radius (Å).
        num_layers: transformer blocks.
        sphere_channels: channels per spherical-harmonic coefficient of node embeddings.
        attn_hidden_channels: channels of the first SO(2) convolution in attention.
        num_heads, attn_alpha_channels, attn_value_channels: attention heads and their
            per-head widths for attention logits and values.
        ffn_hidden_channels: hidden channels of feed-forward networks.
        lmax, mmax: maximum degree and (edge-frame) order.
        grid_resolution: S² grid points per axis (None: the minimal grid for lmax/mmax).
        num_distance_basis: Gaussians on ``[0, cutoff]``.
        edge_channels: hidden width of the radial MLPs.
        max_num_elements: size of the atomic-number embeddings.
        max_neighbors: keep only this many nearest neighbours per atom (None: all).
        max_neighbors_strict: True: exactly the ``max_neighbors`` shortest edges (ties by
            order); False: fairchem's rule, every edge with ``r² <= r²_(k+1) + 0.01 Å²``
            where ``r_(k+1)`` is the (k+1)-th shortest length of that atom.
        norm_type: ``"rms_norm_sh"`` or ``"layer_norm_sh"`` (fairchem's OMat24 norm).
        envelope: smooth cutoff envelope on edges and attention (False: hard cutoff).
        stress_head: ``"equivariant"`` (the package's head) or ``"fairchem"`` (fairchem
            1.10's rank-2 head); only with ``direct_forces``.
        direct_forces: add a direct force head and a rank-2 stress head (non-conservative).
        output_normalizers: fairchem's denormalisation of head outputs, ``{"energy": [rmsd],
            "forces": [rmsd], "stress_isotropic": [rmsd, mean], "stress_anisotropic":
            [rmsd, mean or 5 means]}`` (all optional; stress ones need the fairchem head).
        use_grid_mlp: feed-forward networks as MLPs on the S² grid (OMat24 setting).
        avg_num_nodes, avg_degree: normalisers of the energy sum and degree embedding.
        parity_average: average the outputs over the structure and its point inversion.
            SO(2) convolutions (their ``W_i`` terms) are chiral, so EquiformerV2 alone is
            only SO(3)-invariant; the average makes it O(3)-invariant (mirror images get
            equal energies) at up to twice the cost and with no extra parameters.
        alpha_drop, drop_path_rate: attention-weight dropout and per-structure stochastic
            depth of block updates while training (fairchem: 0.1 / 0.05).
    """

    cutoff: float
    num_layers: int
    sphere_channels: int
    attn_hidden_channels: int
    num_heads: int
    attn_alpha_channels: int
    attn_value_channels: int
    ffn_hidden_channels: int
    lmax: int
    mmax: int
    grid_resolution: int | None
    num_distance_basis: int
    edge_channels: int
    max_num_elements: int = 96
    max_neighbors: int | None = None
    max_neighbors_strict: bool = True
    norm_type: str = "rms_norm_sh"
    envelope: bool = True
    stress_head: str = "equivariant"
    direct_forces: bool = False
    output_normalizers: dict | None = None
    use_grid_mlp: bool = True
    avg_num_nodes: float = AVG_NUM_NODES
    avg_degree: float = AVG_DEGREE
    parity_average: bool = True
    alpha_drop: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.mmax <= self.lmax:
            raise ConfigError(f"EquiformerV2 needs 0 <= mmax <= lmax, got lmax={self.lmax} "
                              f"mmax={self.mmax}")
        if self.norm_type not in NORM_TYPES:
            raise ConfigError(f"EquiformerV2 norm_type must be one of {NORM_TYPES}, "
                              f"got {self.norm_type!r}")
        if self.stress_head not in STRESS_HEADS:
            raise ConfigError(f"EquiformerV2 stress_head must be one of {STRESS_HEADS}, "
                              f"got {self.stress_head!r}")
        extra = sorted(set(self.output_normalizers or {}) - {"energy", "forces"})
        if extra and self.stress_head != "fairchem":
            raise ConfigError(f"EquiformerV2 output_normalizers {extra} need the fairchem "
                              "stress head")

    @property
    def radial_channels(self) -> list[int]:
        """``[num_distance_basis, edge_channels, edge_channels]``: radial MLP sizes."""
        return [self.num_distance_basis, self.edge_channels, self.edge_channels]
