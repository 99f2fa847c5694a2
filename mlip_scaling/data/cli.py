"""``mlip-data``: convert, inspect and generate datasets."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlip_scaling.cli_args import (
    HelpFormatter,
    OneLineParser,
    add_output_flags,
    add_version,
    output_file,
    run_command,
)
from mlip_scaling.data import generate_cli
from mlip_scaling.data.embedded import default_data_path
from mlip_scaling.data.readers import detect_format, read_structures
from mlip_scaling.data.store import StructureStore, write_store
from mlip_scaling.errors import DataError, cli_entry

__all__ = ["main", "dataset_summary"]


def dataset_summary(path: str | Path, verify: bool = False) -> dict:
    """Counts, elements, sizes and label statistics of a dataset file.

    Stored values are always checked (elements, finiteness, offsets); with ``verify`` also
    a store's content hash and every structure's geometry (DataError on the first problem).
    """
    path = Path(path)
    if detect_format(path) == "h5":
        store = StructureStore(path)
        store.validate(content_hash=verify)
        if verify:
            store.check_geometry()
        numbers = store.array("numbers")
        energy, forces = store.array("energy"), store.array("forces")
        stress, has = store.array("stress"), store.has_stress
        sizes, meta = store.num_atoms, dict(store.metadata)
    else:
        structures = read_structures(path)
        sizes = np.array([len(a) for a in structures])
        numbers = np.concatenate([a.numbers for a in structures])
        energy = np.array([a.get_potential_energy() for a in structures])
        forces = np.concatenate([a.get_forces() for a in structures])
        has = np.array(["stress" in a.calc.results for a in structures])
        stress = np.array([a.get_stress(voigt=False) if h else np.zeros((3, 3))
                           for a, h in zip(structures, has)])
        meta = {}
    from ase.data import chemical_symbols

    per_atom = energy / sizes
    fnorm = np.linalg.norm(forces, axis=1)
    return {
        "file": str(path), "structures": int(len(sizes)), "atoms": int(sizes.sum()),
        "atoms_per_structure": [int(sizes.min()), float(sizes.mean()), int(sizes.max())],
        "elements": {chemical_symbols[z]: int(c) for z, c in zip(*np.unique(numbers,
                                                                          return_counts=True))},
        "energy_per_atom_eV": [float(per_atom.min()), float(per_atom.mean()),
                               float(per_atom.max()), float(per_atom.std())],
        "force_norm_eV_per_A": [float(fnorm.min()), float(fnorm.mean()), float(fnorm.max()),
                                float(np.sqrt((forces**2).mean()))],
        "with_stress": int(has.sum()),
        "stress_abs_mean_eV_per_A3": float(np.abs(stress[has]).mean()) if has.any() else None,
        "metadata": meta,
    }


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    start = time.perf_counter()
    s = dataset_summary(default_data_path() if args.file is None else args.file,
                        verify=args.verify)
    table = Table(title=s["file"], show_header=False)
    a = s["atoms_per_structure"]
    e, f = s["energy_per_atom_eV"], s["force_norm_eV_per_A"]
    rows = [("structures", f"{s['structures']:,}"), ("atoms", f"{s['atoms']:,}"),
            ("atoms / structure", f"min {a[0]}  mean {a[1]:.1f}  max {a[2]}"),
            ("elements", "  ".join(f"{k}:{v}" for k, v in s["elements"].items())),
            ("energy / atom (eV)", f"min {e[0]:.3f}  mean {e[1]:.3f}  max {e[2]:.3f}  "
                                   f"std {e[3]:.3f}"),
            ("|F| (eV/Å)", f"mean {f[1]:.3f}  max {f[2]:.2f}  rms component {f[3]:.3f}"),
            ("with stress", f"{s['with_stress']:,}")]
    if s["stress_abs_mean_eV_per_A3"] is not None:
        rows.append(("mean |σ| (eV/Å³)", f"{s['stress_abs_mean_eV_per_A3']:.4f}"))
    rows += [(k, str(v)) for k, v in s["metadata"].items()]
    if args.verify:
        rows.append(("verified", _verified(s, time.perf_counter() - start)))
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return 0


def _verified(summary: dict, seconds: float) -> str:
    """What ``info --verify`` checked (every check passed, or it would have stopped)."""
    checks = "elements, finite values, cells, overlapping atoms"
    if detect_format(summary["file"]) == "h5":
        checks = "offsets, " + checks + (", content hash" if "content_hash" in
                                          summary["metadata"] else " (no content hash recorded)")
    return f"ok: {checks} of {summary['structures']:,} structures ({seconds:.1f} s)"


def _convert(args: argparse.Namespace) -> int:
    src, out = Path(args.input), Path(args.output)
    if out.exists() and not args.force:
        raise DataError(f"{out}: exists (pass --force to overwrite)")
    structures = read_structures(src)
    if detect_format(out) == "h5":
        meta = {"name": out.stem, "source": str(src), "oracle": args.oracle}
        write_store(out, structures, meta)
    else:
        _write_ase(out, structures, args.format or _format_of(out))
    print(f"wrote {len(structures)} structures to {out}")
    return 0


def _format_of(path: Path) -> str:
    """The ase.io format that the name ``path`` implies (``.cif``, ``POSCAR``, ...);
    extxyz when the name implies none."""
    from ase.io.formats import filetype, ioformats

    try:
        fmt = filetype(str(path), read=False)
    except Exception:  # ase raises several types for names it cannot place
        return "extxyz"
    return fmt if fmt in ioformats and ioformats[fmt].can_write else "extxyz"


def _write_ase(out: Path, structures: list, fmt: str) -> None:
    """Write ``structures`` with ase.io as ``fmt`` (DataError naming ``out`` on refusal,
    e.g. a one-structure format such as POSCAR given several)."""
    import ase.io
    from ase.io.formats import UnknownFileTypeError

    from mlip_scaling.io_utils import atomic_path

    try:
        with atomic_path(out) as tmp:
            ase.io.write(str(tmp), structures, format=fmt)
    except (ValueError, TypeError, KeyError, NotImplementedError,
            UnknownFileTypeError) as exc:
        message = ("no such ase.io format" if isinstance(exc, UnknownFileTypeError)
                   else str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__)
        raise DataError(f"{out}: cannot write {len(structures)} structures as {fmt} "
                        f"({message})") from None


def _parser() -> argparse.ArgumentParser:
    fmt = HelpFormatter
    parser = OneLineParser(prog="mlip-data", description=__doc__, formatter_class=fmt)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="counts, elements and label statistics", formatter_class=fmt)
    p.add_argument("file", nargs="?", default=None,
                   help="dataset file (default: the embedded dataset shipped with the package)")
    p.add_argument("--verify", action="store_true",
                   help="also check the content hash and every structure's geometry")
    p.set_defaults(func=_info)
    p = sub.add_parser("convert", help="convert between extxyz / ASE db / aselmdb / .h5 / "
                                       "anything ase.io writes (CIF, POSCAR for pymatgen)",
                       formatter_class=fmt)
    p.add_argument("input", help="dataset file: extxyz, ASE db, aselmdb or .h5")
    p.add_argument("output", type=output_file,
                   help="output file: .h5 (store) or anything ase.io writes")
    p.add_argument("--oracle", default=None, help="oracle name to record in the store")
    p.add_argument("--format", default=None,
                   help="ase.io format for non-.h5 outputs (default: from the output name, "
                        "e.g. .cif, POSCAR; extxyz when the name implies none)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=_convert)
    p = sub.add_parser("generate", help="generate and label structures with an oracle",
                       formatter_class=fmt)
    generate_cli.configure(p)
    p.set_defaults(func=generate_cli.run)
    for command in sub.choices.values():
        add_output_flags(command)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mlip-data``."""
    args = _parser().parse_args(argv)
    return run_command(args, args.func)


if __name__ == "__main__":
    raise SystemExit(main())
