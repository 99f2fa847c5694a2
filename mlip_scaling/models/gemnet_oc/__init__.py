"""GemNet-OC-style directional message passing with triplet and quadruplet interactions."""
