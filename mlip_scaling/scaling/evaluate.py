"""``mlip-scaling evaluate DIR``: test-split and downstream metrics of every model file.

Results are cached per checkpoint content hash (sha256) in ``DIR/scaling_results.json``,
rewritten atomically after each checkpoint, so a rerun evaluates only new files.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from mlip_scaling.checkpoint import CheckpointError, load_checkpoint, potential_from_dict
from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.io_utils import atomic_write_text, file_hash

__all__ = ["evaluate_directory", "find_models", "configure", "run", "RESULTS_NAME"]

RESULTS_NAME = "scaling_results.json"
FORMAT = "mlip-scaling-results/1"


def find_models(directory: Path) -> list[Path]:
    """Exported model files under ``directory`` (resume states ``last.pt`` excluded)."""
    return sorted(p for p in directory.rglob("*.pt") if p.name != "last.pt")


def _test_metrics(potential, ckpt: dict, data_path: Path, max_test: int | None) -> tuple:
    from mlip_scaling.data.atomic_data import collate
    from mlip_scaling.training import data as tdata
    from mlip_scaling.training.loss import (
        LossWeights,
        add_sums,
        error_sums,
        finish_metrics,
        loss_from_sums,
    )

    source, _ = tdata.open_source(data_path)
    train = ckpt.get("train", {})
    expected = train.get("dataset_hash")
    actual = getattr(source, "metadata", {}).get("content_hash")
    if expected and actual and expected != actual:
        raise DataError(f"{data_path}: content differs from the dataset the model was trained "
                        "on (hash mismatch); pass the right --data")
    split = train.get("split", {"val_size": 0.05, "test_size": 0.05, "seed": 0})
    from mlip_scaling.data.splits import split_indices

    test = split_indices(len(source), split["val_size"], split["test_size"], split["seed"])["test"]
    test = test[:max_test] if max_test else test
    items = tdata.prepare(source, test, potential.cutoff, {}, str(data_path), torch.float64)
    sums: dict[str, float] = {}
    for k in range(0, len(items), 16):
        batch = collate(items[k:k + 16])
        sums = add_sums(sums, error_sums(potential(batch), batch))
    metrics = finish_metrics(sums)
    metrics["test_loss"] = loss_from_sums(sums, LossWeights())
    return metrics, source, test


def _downstream(path: Path, source, test, oracle_name: str | None, k_relax: int,
                md_steps: int) -> dict:
    from mlip_scaling.calculators.ase import ScalingCalculator
    from mlip_scaling.data.oracles import get_oracle
    from mlip_scaling.scaling.downstream.md import md_errors
    from mlip_scaling.scaling.downstream.relax import relaxation_errors

    name = oracle_name or getattr(source, "metadata", {}).get("oracle")
    if not name:
        raise ConfigError(f"{path}: the dataset records no oracle; pass --oracle NAME for the "
                          "downstream relaxation/MD reference (or --no-downstream)")
    oracle = get_oracle(name)
    model = ScalingCalculator(str(path), device="cpu", dtype="float64")
    atoms = [source.get_atoms(int(i)) if hasattr(source, "get_atoms") else source[int(i)]
             for i in test]
    periodic = [a for a in atoms if a.pbc.all() and len(a) >= 4]
    out = relaxation_errors(periodic[:k_relax], model, oracle) if k_relax else {}
    if md_steps and periodic:
        start = max(periodic[:20], key=len)
        reps = [max(1, math.ceil(8.0 / np.linalg.norm(v))) for v in start.cell.array]
        out.update(md_errors(start.repeat(reps), model, oracle, steps=md_steps))
    return out


def _record(path: Path, root: Path, digest: str, ckpt: dict) -> dict:
    train = ckpt.get("train", {})
    return {"checkpoint": str(path.relative_to(root)), "hash": digest,
            "family": ckpt["model"]["family"], "model": train.get("model"),
            "n_params": train.get("n_params"), "n_train": train.get("n_train_structures"),
            "flops": train.get("flops"), "dataset_name": train.get("dataset_name"),
            "dataset_hash": train.get("dataset_hash"), "status": "ok", "error": None,
            "metrics": {}}


def _evaluate_one(path: Path, root: Path, digest: str, args: dict) -> dict:
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        return {"checkpoint": str(path.relative_to(root)), "hash": digest, "status": "failed",
                "error": str(exc), "metrics": {}}
    rec = _record(path, root, digest, ckpt)
    try:
        potential = potential_from_dict(ckpt).double().eval()
        data = args["data"] or ckpt.get("train", {}).get("dataset")
        if not data:
            raise ConfigError(f"{path}: the model file names no dataset; pass --data")
        rec["metrics"], source, test = _test_metrics(potential, ckpt, Path(data),
                                                     args["max_test"])
        if args["downstream"]:
            rec["metrics"].update(_downstream(path, source, test, args["oracle"],
                                              args["k_relax"], args["md_steps"]))
    except (CheckpointError, ConfigError, DataError, RuntimeError, ValueError) as exc:
        rec["status"], rec["error"] = "failed", str(exc).splitlines()[0][:300]
    return rec


def evaluate_directory(directory, oracle: str | None = None, data: str | None = None,
                       k_relax: int = 8, md_steps: int = 500, downstream: bool = True,
                       max_test: int | None = None, progress: bool = True) -> list[dict]:
    """Evaluate every new model file under ``directory``; returns all records."""
    from tqdm import tqdm

    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    models = find_models(root)
    if not models:
        raise DataError(f"{root}: no model files (*.pt) found")
    results_path = root / RESULTS_NAME
    cached = {}
    if results_path.is_file():
        cached = {r["hash"]: r for r in json.loads(results_path.read_text())["records"]}
    args = dict(oracle=oracle, data=data, k_relax=k_relax, md_steps=md_steps,
                downstream=downstream, max_test=max_test)
    records = []
    for path in tqdm(models, desc="evaluate", disable=not progress):
        digest = file_hash(path)
        rec = cached.get(digest) or _evaluate_one(path, root, digest, args)
        rec["checkpoint"] = str(path.relative_to(root))
        records.append(rec)
        payload = {"format": FORMAT, "records": records + [
            r for h, r in cached.items() if h not in {x["hash"] for x in records}]}
        atomic_write_text(json.dumps(payload, indent=1), results_path)
    atomic_write_text(json.dumps({"format": FORMAT, "records": records}, indent=1),
                      results_path)
    return records


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlip-scaling evaluate``."""
    parser.add_argument("directory", help="folder of exported model files (searched recursively)")
    parser.add_argument("--oracle", default=None, help="downstream reference (default: the "
                        "dataset's recorded oracle)")
    parser.add_argument("--data", default=None, help="dataset file (default: the one each "
                        "model was trained on)")
    parser.add_argument("--k-relax", type=int, default=8, help="test structures to relax")
    parser.add_argument("--md-steps", type=int, default=500, help="NVE steps (1 fs) per model")
    parser.add_argument("--max-test", type=int, default=None, help="cap on test structures")
    parser.add_argument("--no-downstream", action="store_true", help="test metrics only")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``mlip-scaling evaluate``."""
    records = evaluate_directory(args.directory, args.oracle, args.data, args.k_relax,
                                 args.md_steps, not args.no_downstream, args.max_test,
                                 not args.quiet)
    failed = [r for r in records if r["status"] != "ok"]
    print(f"{len(records)} models evaluated ({len(failed)} failed) -> "
          f"{Path(args.directory) / RESULTS_NAME}")
    for r in failed:
        print(f"failed {r['checkpoint']}: {r['error']}")
    return 0
