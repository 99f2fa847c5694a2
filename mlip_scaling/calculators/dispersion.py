"""DFT-D3 dispersion on top of a model, through the ``dftd3`` package (optional extra).

Usage::

    from mlip_scaling import ScalingCalculator
    from mlip_scaling.calculators.dispersion import with_d3
    atoms.calc = with_d3(ScalingCalculator("model.pt", dtype="float64"), method="PBE")

Add D3 only when the training data lack dispersion (plain PBE, as in OMat24 or MPtrj), with
``method`` naming the functional of those data. The sum is ASE's ``SumCalculator``:
energy, forces and stress add up; the model's batched ``predict`` and committee spreads
stay on the model calculator itself.
"""

from __future__ import annotations

from ase.calculators.calculator import Calculator
from ase.calculators.mixing import SumCalculator

from mlip_scaling.errors import ConfigError

__all__ = ["d3_calculator", "with_d3"]

_INSTALL = ("DFT-D3 dispersion needs the dftd3 package: pip install 'mlip-scaling[dispersion]' "
            "(or conda install -c conda-forge dftd3-python)")


def d3_calculator(method: str = "PBE", damping: str = "d3bj") -> Calculator:
    """The DFT-D3 dispersion calculator alone (energy eV, forces eV/Å, stress eV/Å^3) for
    functional ``method`` with ``damping`` (``"d3bj"``, ``"d3zero"``, ``"d3bjm"``, ...)."""
    try:
        from dftd3.ase import DFTD3
    except ImportError:
        raise ConfigError(_INSTALL) from None
    return DFTD3(method=method, damping=damping)


def with_d3(calc: Calculator, method: str = "PBE", damping: str = "d3bj") -> SumCalculator:
    """``calc`` plus DFT-D3 dispersion (see :func:`d3_calculator`) as one ASE calculator."""
    return SumCalculator([calc, d3_calculator(method, damping)])
