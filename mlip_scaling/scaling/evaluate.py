"""``mlip-scaling evaluate DIR``: test-split and downstream metrics of every model file.

Every exported model ``.pt`` under DIR (recursively) is evaluated; resumable run states
(``last.pt``, recognised by their format key) are skipped. Records are keyed by the model
file's content hash (sha256) in ``DIR/scaling_results.json`` (or ``--results``), merged
into the file under a lock after each checkpoint: a rerun evaluates only new files and
files whose evaluation failed, and records of model files elsewhere (a shared results
file, a moved checkpoint) are kept, never deleted. A file that cannot be evaluated gets a
record with status ``"failed"`` and the error; a missing oracle keeps the test metrics,
and the record's ``error`` says what the downstream metrics need. Paths are stored so
that they resolve from any working directory (absolute, or relative to the results file).

An oracle recorded in a dataset or a results file is data: it resolves only to a built-in
oracle; ``module:...`` runs only when typed as ``--oracle`` (``oracle_trusted``).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

import numpy as np

from mlip_scaling.checkpoint import (
    CheckpointError,
    is_run_state,
    load_checkpoint,
    potential_from_dict,
)
from mlip_scaling.data.dataset import atoms_at, open_for_model, test_set
from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.io_utils import (
    file_hash,
)
from mlip_scaling.procs import worker_pool
from mlip_scaling.scaling.eval_settings import (
    MD_MIN_LENGTH,
    PHONON_MIN_LENGTH,
    EvalSettings,
    stored_settings,
)
from mlip_scaling.scaling.metrics import select, test_metrics
from mlip_scaling.scaling.results import (
    RESULTS_FORMAT,
    load_cache,
    named_records,
    other_records,
    reusable,
    save_records,
)

__all__ = ["evaluate_directory", "find_models", "RESULTS_NAME", "FORMAT", "is_run_state",
           "other_records", "missing_models", "evaluate_missing"]

RESULTS_NAME = "scaling_results.json"
FORMAT = RESULTS_FORMAT
MD_CANDIDATES = 3  # MD starts tried: the first on which the oracle's own run is stable


def find_models(directory: str | os.PathLike) -> list[Path]:
    """Candidate model files under ``directory`` (``*.pt``, recursively, sorted)."""
    return sorted(p for p in Path(directory).rglob("*.pt") if p.is_file())


def _clean(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf -> None."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _md_start(atoms, oracle, oracle_key: str, min_length: float = MD_MIN_LENGTH):
    """The MD start: the structure relaxed by the oracle (fixed cell), repeated until every
    cell height is >= ``min_length`` Å."""
    from mlip_scaling.scaling.downstream.relax import oracle_relax

    cell = atoms.cell.array
    volume = abs(np.linalg.det(cell))
    heights = [volume / np.linalg.norm(np.cross(cell[i - 2], cell[i - 1])) for i in range(3)]
    reps = [max(1, math.ceil(min_length / h)) for h in heights]
    start = oracle_relax(atoms, oracle, oracle_key, 0.05, 200, True).atoms
    return start.repeat(reps)


def downstream_metrics(model_file: Path, structures: list, oracle_name: str, k_relax: int,
                       md_steps: int, md_temperature: float = 300.0, jobs: int = 1,
                       progress: bool = False, trusted: bool = False, where: str = "",
                       max_atoms: int | None = None, md_min_length: float | None = None,
                       k_phonon: int = 0, k_elastic: int = 0,
                       phonon_min_length: float | None = None) -> dict:
    """Relaxation and MD metrics of a model file against oracle ``oracle_name``: the first
    ``k_relax`` periodic structures relaxed with a free cell (energy, RMSD, failures) and with
    a fixed cell (``relax_adwt``); NVE MD from the first of the first three on which the
    oracle's own run is stable. ``max_atoms``: only structures with at most that many atoms
    are used (cheaper downstream work). ``k_phonon``/``k_elastic``: structures whose phonons
    (supercell heights >= ``phonon_min_length`` Å) and elastic constants are compared (0:
    off). ``trusted``: the user typed the oracle name (only then
    may it import code); ``where``: its origin."""
    from mlip_scaling.calculators.ase import ScalingCalculator
    from mlip_scaling.data.oracles import get_oracle
    from mlip_scaling.scaling.downstream.md import md_errors, stable_start
    from mlip_scaling.scaling.downstream.relax import relaxation_errors

    get_oracle(oracle_name, trusted, where)  # fail early on an unknown or refused name
    oracle = functools.partial(get_oracle, oracle_name, trusted, where)
    model = functools.partial(ScalingCalculator, str(model_file), device="cpu", dtype="float64")
    periodic = [a for a in structures if a.pbc.all() and len(a) <= (max_atoms or len(a))]
    out: dict = {}
    if k_relax and periodic:
        for evaluation, fixed_cell in (("relax", False), ("relax_fixed", True)):
            out.update(select(relaxation_errors(
                periodic[:k_relax], model, oracle, fixed_cell=fixed_cell, jobs=jobs,
                progress=progress, oracle_key=oracle_name), evaluation))
    if md_steps and periodic:
        reference = oracle()
        starts = [_md_start(a, oracle, oracle_name, md_min_length or MD_MIN_LENGTH)
                  for a in periodic[:MD_CANDIDATES]]
        start = stable_start(starts, reference, oracle_name, md_temperature, md_steps)
        out.update(select(md_errors(start, model(), reference, temperature_K=md_temperature,
                                    steps=md_steps, oracle_key=oracle_name), "md"))
    # --- phonons and elastic constants ---
    if k_phonon and periodic:
        from mlip_scaling.scaling.downstream.phonons import phonon_errors

        out.update(select(phonon_errors(periodic[:k_phonon], model, oracle,
                                        phonon_min_length or PHONON_MIN_LENGTH, oracle_name,
                                        progress), "phonons"))
    if k_elastic and periodic:
        from mlip_scaling.scaling.downstream.elastic import elastic_errors

        out.update(select(elastic_errors(periodic[:k_elastic], model, oracle, oracle_name,
                                         progress), "elastic"))
    # --- end phonons and elastic constants ---
    return out


def _record(path: Path, root: Path, digest: str, ckpt: dict | None, settings: dict) -> dict:
    train = (ckpt or {}).get("train", {})
    family = (ckpt or {}).get("model", {}).get("family")
    return {"checkpoint": str(path.relative_to(root)), "hash": digest, "family": family,
            "model": train.get("model") or train.get("preset") or path.stem,
            "n_params": train.get("n_params"), "n_train": train.get("n_train_structures"),
            "flops": train.get("flops"), "dataset_name": train.get("dataset_name"),
            "dataset_hash": train.get("dataset_hash"), "status": "ok", "error": None,
            "budget": train.get("budget"), "flops_matmul": train.get("flops_matmul"),
            "seed": train.get("seed"), "converged": train.get("converged"),
            "best_step": train.get("best_step"), "metrics": {}, "settings": settings}


def _oracle_choice(settings: dict, source: Any, data: str, trusted: bool
                   ) -> tuple[str | None, bool, str]:
    """(oracle name, whether the user typed it, where it came from): ``--oracle`` first,
    else the dataset's metadata (never trusted: a file names it)."""
    if settings["oracle"]:
        return settings["oracle"], trusted, "--oracle" if trusted else "evaluation settings"
    return (getattr(source, "metadata", None) or {}).get("oracle"), False, f"dataset {data}"


def evaluate_file(path: Path, root: Path, ckpt: dict, digest: str, settings: dict,
                  jobs: int = 1, progress: bool = False, oracle_trusted: bool = False) -> dict:
    """One record (see the results format) for a loaded model file.

    ``oracle_trusted``: ``settings["oracle"]`` was typed by the user (may be ``module:``).
    """
    rec = _record(path, root, digest, ckpt, settings)
    try:
        data = settings["data"] or ckpt.get("train", {}).get("dataset")
        if not data:
            raise ConfigError(f"{path}: the model file names no dataset; pass --data")
        source = open_for_model(data, ckpt, path)
        test = test_set(ckpt, source, settings["max_test"], str(data))
        potential = potential_from_dict(ckpt).double().eval()
        rec["metrics"] = test_metrics(potential, source, test)
        if settings["downstream"]:
            name, trusted, where = _oracle_choice(settings, source, data, oracle_trusted)
            if not name:
                rec["error"] = (f"downstream metrics skipped: dataset {data} records no oracle; "
                                "pass --oracle NAME (e.g. emt, sw, mixed:emt+sw)")
                return _clean(rec)
            structures = [atoms_at(source, i) for i in test]
            rec["metrics"].update(downstream_metrics(
                path, structures, name, settings["k_relax"], settings["md_steps"],
                settings["md_temperature"], jobs, progress, trusted, where,
                settings.get("relax_max_atoms"), settings.get("md_min_length"),
                settings.get("k_phonon", 0), settings.get("k_elastic", 0),
                settings.get("phonon_min_length")))
    except (CheckpointError, ConfigError, DataError, RuntimeError, ValueError, KeyError,
            IndexError, TypeError, OSError) as exc:
        rec["status"] = "failed"
        rec["error"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return _clean(rec)


def evaluate_directory(directory: str | os.PathLike, jobs: int = 1,
                       results_path: str | os.PathLike | None = None, progress: bool = True,
                       oracle_trusted: bool = False, **options: Any) -> list[dict]:
    """Evaluate every new model file under ``directory`` -> the records of its model files.

    ``options``: the fields of :class:`~mlip_scaling.scaling.eval_settings.EvalSettings`.
    ``jobs`` processes (0: all cores) evaluate files side by side, or relax one file's
    structures in parallel when it is the only new one. Records are keyed by content hash:
    one that succeeded with the same settings is reused, failed ones are retried, and
    records of model files elsewhere (a shared results file, a moved file) are kept.
    ``oracle_trusted``: the user typed the oracle (only then may it be
    ``module:pkg.mod:factory``).
    """
    from mlip_scaling.data.oracles import check_oracle
    from mlip_scaling.progress import ProgressBar

    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    candidates = find_models(root)
    if not candidates:
        raise DataError(f"{root}: no model files (*.pt) found")
    results_path = Path(results_path) if results_path else root / RESULTS_NAME
    try:
        settings = EvalSettings(**options).record()
    except TypeError as exc:
        raise ConfigError(f"evaluate: {exc}") from None
    if settings["oracle"]:
        check_oracle(settings["oracle"], oracle_trusted,
                     "--oracle" if oracle_trusted else "oracle setting")
    jobs = jobs if jobs > 0 else (os.cpu_count() or 1)
    cached = {r["hash"]: r for r in load_cache(results_path)}
    files: dict[str, Path] = {}  # content hash -> first file with that content
    for path in candidates:
        files.setdefault(file_hash(path), path)
    done = {d: cached[d] for d in files if reusable(cached.get(d), settings)}
    todo = [(p, d) for d, p in files.items() if d not in done]
    with ProgressBar(len(files), len(done), "evaluate", "files", progress) as bar:
        for digest, rec in _evaluate_all(todo, root, settings, jobs, progress,
                                         oracle_trusted):
            done[digest] = rec
            bar.advance()
            save_records(results_path, named_records(files, done, results_path))
    records = named_records(files, done, results_path)
    save_records(results_path, records)
    return list(records.values())


def _evaluate_path(path: Path, root: Path, digest: str, settings: dict, jobs: int = 1,
                   progress: bool = False, oracle_trusted: bool = False) -> dict | None:
    """The record of one file; ``None`` for a resumable run state."""
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        if is_run_state(path):
            return None
        rec = _record(path, root, digest, None, settings)
        rec.update(status="failed", error=str(exc).splitlines()[0])
        return rec
    return evaluate_file(path, root, ckpt, digest, settings, jobs, progress, oracle_trusted)


def _evaluate_all(todo: list[tuple[Path, str]], root: Path, settings: dict, jobs: int,
                  progress: bool, trusted: bool = False) -> Iterator[tuple[str, dict | None]]:
    """Evaluate ``todo`` -> (content hash, record): ``jobs`` files side by side (one process
    and thread each, dying with this one) when there are several, else one after another
    with ``jobs`` parallel relaxations."""
    if jobs > 1 and len(todo) > 1:
        with worker_pool(min(jobs, len(todo))) as ex:
            futures = {ex.submit(_evaluate_path, p, root, d, settings, 1, False, trusted): d
                       for p, d in todo}
            for future in as_completed(futures):
                yield futures[future], future.result()
        return
    for path, digest in todo:
        yield digest, _evaluate_path(path, root, digest, settings, jobs, progress, trusted)


def missing_models(directory: Path) -> list[Path]:
    """Model files in ``directory`` without a successful record in its results (failed
    evaluations are retried); DataError when there is neither a model file nor results."""
    from mlip_scaling.scaling.report import load_records

    results = directory / RESULTS_NAME
    known = {r.get("hash") for r in load_records(results) if r.get("status") == "ok"
             } if results.is_file() else set()
    missing = [p for p in find_models(directory)
               if file_hash(p) not in known and not is_run_state(p)]
    if not missing and not results.is_file():
        raise DataError(f"{directory}: no model files (*.pt) and no {RESULTS_NAME}")
    return missing


def evaluate_missing(directory: Path, overrides: dict[str, Any], jobs: int = 1,
                     progress: bool = True) -> None:
    """Evaluate the :func:`missing_models` of ``directory`` with the settings of its
    existing results updated by ``overrides`` (None = keep). An oracle typed in
    ``overrides`` is trusted; one read from the results file resolves to a built-in only."""
    results = directory / RESULTS_NAME
    settings = stored_settings(results)
    typed = overrides.get("oracle") is not None
    if not typed and settings.get("oracle"):  # read from a file: built-ins only
        from mlip_scaling.data.oracles import check_oracle

        check_oracle(settings["oracle"], trusted=False, where=f"{results}: settings")
    settings.update({k: v for k, v in overrides.items() if v is not None})
    evaluate_directory(directory, jobs=jobs, progress=progress, oracle_trusted=typed,
                       **settings)
