"""mlip-scaling: machine-learned interatomic potentials and their scaling laws."""

from __future__ import annotations

from mlip_scaling._version import __version__

__all__ = ["ScalingCalculator", "Potential", "load_potential", "relax", "__version__"]


def __getattr__(name: str):  # lazy: importing the package stays cheap
    if name == "ScalingCalculator":
        from mlip_scaling.calculators.ase import ScalingCalculator

        return ScalingCalculator
    if name == "Potential":
        from mlip_scaling.models.potential import Potential

        return Potential
    if name == "load_potential":
        from mlip_scaling.checkpoint import load_potential

        return load_potential
    if name == "relax":
        from mlip_scaling.calculators.structures import relax

        return relax
    raise AttributeError(f"module 'mlip_scaling' has no attribute {name!r}")
