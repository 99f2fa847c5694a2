"""Former name of :mod:`mlip_scaling.calculators.socket_serve`: :func:`serve` is re-exported,
and ``python -m mlip_scaling.calculators.socket_client`` runs the command of
:mod:`mlip_scaling.calculators.cli`."""

from __future__ import annotations

from mlip_scaling.calculators.socket_serve import serve

__all__ = ["serve"]

if __name__ == "__main__":
    from mlip_scaling.calculators.cli import main

    raise SystemExit(main())
