"""Merge the records of study runs made apart into one study folder, and fit them.

    python studies/merge_results.py OUT SOURCE [SOURCE ...]

A SOURCE is a study folder (``runs/scaling_results.json``, model files optional) or a
results folder or file (``scaling_results.json``, e.g. ``studies/results/reference``). Each
family must come from one source only (a family's runs are never mixed across sources),
no model file may appear twice, and every record must name the same dataset (recipe, size
and seed: ``dataset_name``). Writes ``OUT/runs/scaling_results.json``,
``OUT/runs/train_walls.json`` (training seconds per family: summed over a source's model
files, or that source's own ``train_walls.json``) and the fitted report in ``OUT/report``;
then ``studies/study_table.py OUT`` reads OUT as it reads a study folder.

Datasets are compared by name, not by content hash: the generator's labels differ in the
last bits between CPUs (another SIMD path), which changes the bitwise hash of the same
recipe (docs/study.md, "Reproducing").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlip_scaling.errors import DataError, cli_entry
from mlip_scaling.io_utils import atomic_write_text

RESULTS, WALLS = "scaling_results.json", "train_walls.json"


def _results_file(source: Path) -> Path:
    for path in (source, source / "runs" / RESULTS, source / RESULTS):
        if path.is_file():
            return path
    raise DataError(f"{source}: no {RESULTS} (a study folder, a results folder or the file)")


def _load(source: Path) -> tuple[list[dict], dict[str, float]]:
    """(records, training seconds per family) of one source."""
    path = _results_file(source)
    try:
        data = json.loads(path.read_text())
        records = data["records"] if isinstance(data, dict) else data
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a results file ({type(exc).__name__})") from None
    sys.path.insert(0, str(Path(__file__).parent))
    from study_table import training_walls

    walls = training_walls(path.parent.parent) if path.parent.name == "runs" else {}
    return records, walls or _saved_walls(path.parent / WALLS)


def _saved_walls(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise DataError(f"{path}: not a family -> seconds mapping "
                        f"({type(exc).__name__})") from None


def merge(sources: list[Path]) -> tuple[list[dict], dict[str, float]]:
    """The records of ``sources`` together, checked (DataError naming the conflict)."""
    records: list[dict] = []
    walls: dict[str, float] = {}
    owner: dict[str, Path] = {}
    for source in sources:
        mine, source_walls = _load(source)
        for fam in sorted({str(r.get("family")) for r in mine}):
            if fam in owner:
                raise DataError(f"{source}: family {fam!r} is also in {owner[fam]}; a family's "
                                "runs must come from one source")
            owner[fam] = source
            if fam in source_walls:
                walls[fam] = source_walls[fam]
        records += mine
    seen: set[str] = set()
    for rec in records:
        name = str(rec.get("checkpoint"))
        if name in seen:
            raise DataError(f"model file {name} appears twice among the sources")
        seen.add(name)
    names = sorted({str(r.get("dataset_name")) for r in records})
    if len(names) > 1:
        raise DataError(f"the sources were trained on different datasets: {', '.join(names)}")
    return records, walls


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="merged study folder (runs/ and report/)")
    parser.add_argument("sources", type=Path, nargs="+", help="study or results folders")
    parser.add_argument("-q", "--quiet", action="store_true", help="no tables")
    args = parser.parse_args(argv)
    records, walls = merge(args.sources)
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps({"format": "mlip-scaling-results/1", "records": records},
                                 indent=1) + "\n", runs / RESULTS)
    atomic_write_text(json.dumps(walls, indent=1) + "\n", runs / WALLS)
    from mlip_scaling.scaling.report import write_report

    html, _ = write_report(runs / RESULTS, args.out / "report", allow_mixed=True,
                           quiet=args.quiet)
    print(f"{len(records)} records of {len(args.sources)} sources; report: {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
