"""Serve a model to a socket server speaking the i-PI protocol (i-PI, ASE's SocketIOCalculator).

The server (the driver: i-PI, or ``ase.calculators.socketio.SocketIOCalculator``) owns the
dynamics and sends positions and cell; this client answers with energy, forces and virial.
Start the server first, then :func:`serve`, or from a shell::

    python -m mlip_scaling.calculators.cli model.pt start.xyz --unix mlip

A UNIX socket ``NAME`` lives at ``/tmp/ipi_NAME`` for both ends.
"""

from __future__ import annotations

import time
from typing import Any

from ase.calculators.calculator import Calculator
from ase.calculators.socketio import SocketClient

from mlip_scaling.calculators.structures import as_atoms
from mlip_scaling.errors import ConfigError

__all__ = ["serve"]


def _connect(unixsocket: str | None, port: int | None, host: str, wait: float) -> SocketClient:
    """A client connected to the server, retrying for ``wait`` s while none listens yet."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return SocketClient(host=host, port=port, unixsocket=unixsocket)
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            if time.monotonic() >= deadline:
                where = f"/tmp/ipi_{unixsocket}" if unixsocket else f"{host}:{port}"
                raise ConfigError(f"no socket server at {where} after {wait:g} s ({exc}); "
                                  "start the server (i-PI) first") from None
            time.sleep(0.1)


def serve(structure: Any, calc: Calculator, unixsocket: str | None = None,
          port: int | None = None, host: str = "localhost", wait: float = 60.0,
          use_stress: bool | None = None) -> int:
    """Answer a socket server's requests with ``calc`` until it tells the client to exit.

    Args:
        structure: Atoms or pymatgen Structure whose elements and order match the server's.
        calc: the calculator to serve (a ScalingCalculator).
        unixsocket: name of a UNIX socket (``/tmp/ipi_NAME``); or ``port`` on ``host``.
        wait: seconds to keep trying to connect while the server is not up yet.
        use_stress: send the virial (default: when periodic in all directions).

    Returns the number of evaluations served.
    """
    if (unixsocket is None) == (port is None):
        raise ConfigError("give exactly one of unixsocket and port")
    atoms = as_atoms(structure).copy()
    atoms.calc = calc
    stress = bool(atoms.pbc.all()) if use_stress is None else use_stress
    client = _connect(unixsocket, port, host, wait)
    served = 0
    try:
        for _ in client.irun(atoms, use_stress=stress):
            served += 1
    finally:
        client.close()
    return served

