"""Serve a model to a socket server speaking the i-PI protocol (i-PI, ASE's SocketIOCalculator).

The server (the driver: i-PI, or ``ase.calculators.socketio.SocketIOCalculator``) owns the
dynamics and sends positions and cell; this client answers with energy, forces and virial.
Start the server first, then::

    python -m mlip_scaling.calculators.socket_client model.pt start.xyz --unix mlip
    python -m mlip_scaling.calculators.socket_client model.pt start.xyz --port 31415

``start.xyz`` gives the elements in the server's atom order (the protocol sends only
positions and cell). A UNIX socket ``NAME`` lives at ``/tmp/ipi_NAME`` for both ends.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from ase.calculators.calculator import Calculator
from ase.calculators.socketio import SocketClient

from mlip_scaling.calculators.structures import as_atoms
from mlip_scaling.cli_args import POSITIVE, OneLineParser
from mlip_scaling.errors import ConfigError, DataError, cli_entry

__all__ = ["serve", "main"]


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


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m mlip_scaling.calculators.socket_client",
                           description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model", help="model file (.pt)")
    parser.add_argument("structure", help="structure file (anything ase.io reads): elements "
                                          "in the server's atom order")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix", help="UNIX socket name (/tmp/ipi_NAME)")
    where.add_argument("--port", type=int, help="TCP port on --host")
    parser.add_argument("--host", default="localhost", help="server host for --port")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                        help="model precision")
    parser.add_argument("--wait", type=POSITIVE, default=60.0,
                        help="seconds to wait for the server to come up")
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """Serve a model file to an i-PI-protocol server."""
    import ase.io

    from mlip_scaling.calculators.ase import ScalingCalculator

    args = _parser().parse_args(argv)
    try:
        atoms = ase.io.read(args.structure)
    except Exception as exc:  # ase.io raises many types for unknown/corrupt formats
        raise DataError(f"{args.structure}: cannot read a structure "
                        f"({str(exc).splitlines()[0][:120]})") from None
    calc = ScalingCalculator(args.model, device=args.device, dtype=args.dtype)
    served = serve(atoms, calc, unixsocket=args.unix, port=args.port, host=args.host,
                   wait=args.wait)
    print(f"served {served} evaluations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
