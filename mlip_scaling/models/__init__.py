"""Energy models (transformer, EquiformerV2), blocks, the Potential wrapper, presets."""
