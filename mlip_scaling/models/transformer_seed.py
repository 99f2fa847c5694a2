"""The seed paper's transformer (arXiv:2509.21811), for like-for-like comparisons.

One token per atom: an atomic-number embedding concatenated with the raw Cartesian
coordinates (Å). Full self-attention among the atoms of each structure (structures of a
batch are masked from each other); no cell, no periodic images, no cutoff. Heads:

* per-atom energy, summed per structure (by :class:`~mlip_scaling.models.potential.Potential`);
* per-atom force vector (a *direct* force head; forces are not ``-dE/dr``);
* per-atom Voigt stress ``[xx, yy, zz, yz, xz, xy]``, averaged over the atoms of each
  structure (so it stays intensive under supercells) and zero for non-periodic structures.

NOT invariant: raw coordinates are features, so energies change under rotations and
translations, forces do not rotate with the structure, and periodic images are invisible.
It exists to reproduce the paper's baseline, not as a physical potential.
"""

from __future__ import annotations

import torch
from ase.stress import full_3x3_to_voigt_6_index
from torch import nn
from torch.nn import functional as F

from mlip_scaling import keys
from mlip_scaling.models.blocks import mlp, scatter_mean
from mlip_scaling.models.transformer import AtomTokenModel

__all__ = ["SeedTransformer", "voigt_to_matrix"]

#: Voigt index of each entry of a symmetric 3x3 matrix (row-major), in ASE's order.
_VOIGT_INDEX = tuple(full_3x3_to_voigt_6_index(i, j) for i in range(3) for j in range(3))


def voigt_to_matrix(voigt: torch.Tensor) -> torch.Tensor:
    """[..., 6] Voigt ``[xx, yy, zz, yz, xz, xy]`` -> [..., 3, 3] symmetric matrices."""
    index = torch.tensor(_VOIGT_INDEX, device=voigt.device)
    return voigt[..., index].reshape(*voigt.shape[:-1], 3, 3)


class _EncoderLayer(nn.Module):
    """Pre-LN transformer encoder layer with padding masks (dim D, FFN D -> m·D -> D, GELU)."""

    def __init__(self, dim: int, num_heads: int, ffn_multiplier: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = mlp([dim, ffn_multiplier * dim, dim], activation=nn.GELU)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` [B, L, D], ``mask`` [B, 1, L, L] bool (True = may attend) -> [B, L, D]."""
        b, length, dim = x.shape
        qkv = self.qkv(self.norm_attn(x)).view(b, length, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, L, D/H] each
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(att.transpose(1, 2).reshape(b, length, dim))
        return x + self.ffn(self.norm_ffn(x))


class SeedTransformer(AtomTokenModel):
    """Non-invariant transformer with direct force and stress heads (the paper's design).

    Args:
        cutoff: radius (Å) of the data pipeline's neighbour list; the model ignores it.
        embedding_dim: atomic-number embedding width d (token width d + 3).
        num_layers: encoder layers.
        num_heads: attention heads (divide ``embedding_dim + 3``).
        ffn_multiplier: feed-forward width as a multiple of the token width.
        max_num_elements: embedding size (Z < max_num_elements).

    Returns ``energies`` [N] (eV), ``forces`` [N, 3] (eV/Å), ``stress`` [B, 3, 3] (eV/Å^3).
    """

    direct_forces = True

    def __init__(self, cutoff: float, embedding_dim: int, num_layers: int, num_heads: int,
                 ffn_multiplier: int = 4, max_num_elements: int = 119) -> None:
        dim = embedding_dim + 3
        if dim % num_heads:
            raise ValueError(f"embedding_dim + 3 = {dim} is not divisible by num_heads={num_heads}")
        super().__init__(cutoff, max_num_elements, embedding_dim)
        self.layers = nn.ModuleList(
            _EncoderLayer(dim, num_heads, ffn_multiplier) for _ in range(num_layers)
        )
        self.norm_out = nn.LayerNorm(dim)
        self.energy_head = mlp([dim, dim, 1])
        self.force_head = mlp([dim, dim, 3])
        self.stress_head = mlp([dim, dim, 6])

    def _pad(self, tokens: torch.Tensor, data: dict[str, torch.Tensor]):
        """Per-atom tokens [N, D] -> padded [B, L, D], attention mask, slot of each atom."""
        batch = data[keys.BATCH]
        counts = data[keys.NUM_ATOMS].to(batch.device)
        n_struct, length = len(counts), int(counts.max()) if len(counts) else 0
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(batch), device=batch.device) - start[batch]
        padded = tokens.new_zeros((n_struct, length, tokens.shape[-1]))
        padded[batch, slot] = tokens
        valid = torch.arange(length, device=batch.device)[None, :] < counts[:, None]  # [B, L]
        eye = torch.eye(length, dtype=torch.bool, device=batch.device)
        mask = (valid[:, None, :] & valid[:, :, None]) | eye  # padded rows see themselves
        return padded, mask[:, None], slot

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        numbers, pos = data[keys.ATOMIC_NUMBERS], data[keys.POSITIONS]
        data = dict(data)
        if keys.BATCH not in data:
            data[keys.BATCH] = torch.zeros(len(pos), dtype=torch.long, device=pos.device)
            data[keys.NUM_ATOMS] = torch.tensor([len(pos)], device=pos.device)
        emb = self.embed(numbers)
        tokens = torch.cat([emb, pos.to(emb.dtype)], dim=-1)
        x, mask, slot = self._pad(tokens, data)
        for layer in self.layers:
            x = layer(x, mask)
        h = self.norm_out(x)[data[keys.BATCH], slot]  # [N, D]
        n_struct = data[keys.CELL].shape[0]
        per_atom_stress = voigt_to_matrix(self.stress_head(h))  # [N, 3, 3]
        stress = scatter_mean(per_atom_stress, data[keys.BATCH], n_struct)
        periodic = data[keys.PBC].all(dim=1).to(stress.dtype).view(-1, 1, 1)
        return {
            keys.ATOMIC_ENERGIES: self.energy_head(h).squeeze(-1),
            keys.FORCES: self.force_head(h),
            keys.STRESS: stress * periodic,
        }
