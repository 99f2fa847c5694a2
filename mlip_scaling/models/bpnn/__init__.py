"""Behler-Parrinello networks: per-element MLPs on atom-centred symmetry functions."""
