"""Serve a model file to a socket server speaking the i-PI protocol (i-PI, ASE's
SocketIOCalculator); the work is done by :func:`mlip_scaling.calculators.socket_serve.serve`.

Start the server first, then::

    python -m mlip_scaling.calculators.cli model.pt start.xyz --unix mlip
    python -m mlip_scaling.calculators.cli model.pt start.xyz --port 31415

``start.xyz`` gives the elements in the server's atom order (the protocol sends only
positions and cell). A UNIX socket ``NAME`` lives at ``/tmp/ipi_NAME`` for both ends.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mlip_scaling.cli_args import POSITIVE, HelpFormatter, OneLineParser
from mlip_scaling.errors import cli_entry

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m mlip_scaling.calculators.cli",
                           description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("model", help="model file (.pt)")
    parser.add_argument("structure", help="structure file (anything ase.io reads; its last "
                                          "frame): elements in the server's atom order")
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
    """Serve a model file to an i-PI-protocol server; prints the evaluations served."""
    from mlip_scaling.calculators.ase import ScalingCalculator
    from mlip_scaling.calculators.socket_serve import serve
    from mlip_scaling.data.readers import read_structures

    args = _parser().parse_args(argv)
    atoms = read_structures(args.structure, index="-1", validate=False)[0]
    calc = ScalingCalculator(args.model, device=args.device, dtype=args.dtype)
    served = serve(atoms, calc, unixsocket=args.unix, port=args.port, host=args.host,
                   wait=args.wait)
    print(f"served {served} evaluations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
