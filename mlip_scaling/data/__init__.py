"""Atomic data: neighbour lists, data dicts, datasets, oracles and generators."""
