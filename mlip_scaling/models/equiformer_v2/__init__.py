"""EquiformerV2: SO(2) eSCN convolutions, equivariant attention, RMS norms."""
