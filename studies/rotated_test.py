"""What a family without rotation symmetry loses off its training frame.

    python studies/rotated_test.py STUDY [--family transformer-vec] [--max-test 200]

For every model file of the family under ``STUDY/runs``: the test force MAE (eV/Å) on its
test split as stored and on the same structures each turned by a random rotation (seeded
by the structure's index; the labels turned with them). A rotation-invariant family gives
the same number twice (to round-off); a family that builds in no rotation symmetry learns
the frame of its training data, and the study's generated crystals all share one. Prints a
Markdown table (and ``--json`` writes the rows), then the data exponent of both columns
fitted as the report fits the test force MAE (unweighted: the rotated errors have no
standard errors).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from mlip_scaling.errors import DataError, cli_entry
from mlip_scaling.io_utils import atomic_write_text


def rotated(atoms, seed: int):
    """A copy of ``atoms`` turned by a random rotation, and its forces turned with it."""
    matrix = Rotation.random(random_state=seed).as_matrix()
    out = atoms.copy()
    out.positions = atoms.positions @ matrix.T
    out.cell = np.asarray(atoms.cell) @ matrix.T
    return out, atoms.get_forces() @ matrix.T


def force_maes(model: Path, max_test: int) -> tuple[float, float, int]:
    """(force MAE as stored, force MAE rotated, structures) on the model's test split."""
    from mlip_scaling.calculators.ase import ScalingCalculator
    from mlip_scaling.checkpoint import load_checkpoint
    from mlip_scaling.data.dataset import atoms_at, open_for_model, test_set

    ckpt = load_checkpoint(model)
    data = (ckpt.get("train") or {}).get("dataset")
    if not data:
        raise DataError(f"{model}: the model file names no dataset")
    source = open_for_model(data, ckpt, model)
    indices = list(test_set(ckpt, source, max_test, str(data)))
    plain = [atoms_at(source, i) for i in indices]
    turned = [rotated(a, int(i)) for a, i in zip(plain, indices)]
    calc = ScalingCalculator(str(model), device="cpu", dtype="float64")
    errors = []
    for structures, labels in ((plain, [a.get_forces() for a in plain]),
                               ([a for a, _ in turned], [f for _, f in turned])):
        preds = calc.predict(structures)
        errors.append(float(np.mean(np.concatenate(
            [np.abs(p["forces"] - f).ravel() for p, f in zip(preds, labels)]))))
    return errors[0], errors[1], len(indices)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="study folder (its runs/ hold model files)")
    parser.add_argument("--family", default="transformer-vec", help="model family prefix")
    parser.add_argument("--max-test", type=int, default=200, help="test structures per model")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    models = sorted(p for p in (args.study / "runs").glob(f"{args.family}-*/*.pt")
                    if p.name != "last.pt")
    if not models:
        raise DataError(f"{args.study}/runs: no model files of {args.family}")
    print("| model file | force MAE (eV/Å) | rotated | ratio |\n|---|---|---|---|")
    rows = []
    for path in models:
        plain, turned, n = force_maes(path, args.max_test)
        rows.append({"model": path.name, "force_mae": plain, "force_mae_rotated": turned,
                     "structures": n})
        print(f"| {path.stem} | {plain:.3f} | {turned:.3f} | {turned / plain:.2f} |",
              flush=True)
    if args.json is not None:
        atomic_write_text(json.dumps(rows, indent=1) + "\n", args.json)
    for key, label in (("force_mae", "as stored"), ("force_mae_rotated", "rotated")):
        print(f"data exponent, {label}: {data_exponent(args.study, rows, key)}")
    return 0


def data_exponent(study: Path, rows: list[dict], key: str) -> str:
    """'0.30 [0.26, 0.33], p 2e-05': the data-axis power law of column ``key``."""
    from mlip_scaling.scaling.report import fit_records

    results = json.loads((study / "runs" / "scaling_results.json").read_text())["records"]
    by_name = {Path(r["checkpoint"]).name: r for r in results}
    records = [{**rec, "metrics": {"force_mae": row[key],  # the test loss picks the slice
                                   "test_loss": rec["metrics"]["test_loss"]}}
               for row in rows if (rec := by_name.get(row["model"])) is not None]
    for fit in fit_records(records, metrics=["force_mae"], axes=["data"], n_perm=200):
        if fit["form"] == "power" and fit["status"] == "ok":
            lo, hi = fit["ci"]["beta"]
            return f"{fit['params']['beta']:.3f} [{lo:.3f}, {hi:.3f}], p {fit['p_trend']:.2g}"
    return "no power law fitted"


if __name__ == "__main__":
    sys.exit(main())
