"""Read an evaluation results file (``scaling_results.json``) and check its structure.

The file is data: every field is checked for its type before any code uses it, and a
file of the wrong shape is one :class:`DataError` naming the file, the record and the
field. Records may carry fields this version does not know (they are kept as they are).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlip_scaling.errors import DataError
from mlip_scaling.io_utils import atomic_write_text, exclusive_lock, remove_stale_temps

__all__ = ["RESULTS_FORMAT", "read_results", "check_records", "load_cache", "merge_records",
           "save_records", "stored_name", "reusable", "named_records", "other_records"]

RESULTS_FORMAT = "mlip-scaling-results/1"

_NUMBER = (int, float)
#: record field -> accepted type(s); None is always accepted
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "checkpoint": str, "hash": str, "family": str, "model": str, "n_params": _NUMBER,
    "n_train": _NUMBER, "flops": _NUMBER, "dataset_name": str, "dataset_hash": str,
    "status": str, "error": str, "metrics": dict, "settings": dict, "converged": bool,
    "seed": int, "best_step": int,
}
#: evaluation setting -> accepted type(s); None is always accepted
SETTING_FIELDS: dict[str, type | tuple[type, ...]] = {
    "oracle": str, "data": str, "k_relax": int, "md_steps": int, "downstream": bool,
    "max_test": int, "md_temperature": _NUMBER,
}


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "dict": "an object", "bool": "true/false", "int": "an integer",
             "float": "a number"}
    if isinstance(kind, tuple):
        return "a number"
    return names.get(kind.__name__, kind.__name__)


def _bad(value: object, kind: type | tuple[type, ...]) -> bool:
    """Whether ``value`` (not None) fails ``kind``; booleans are not numbers."""
    if value is None:
        return False
    if isinstance(value, bool):
        return kind is not bool
    return not isinstance(value, kind)


def _check_fields(mapping: dict, fields: dict, where: str) -> None:
    for key, kind in fields.items():
        if key in mapping and _bad(mapping[key], kind):
            raise DataError(f"{where}: field {key!r} must be {_type_name(kind)} or null, "
                            f"got {json.dumps(mapping[key])[:60]}")


def check_records(records: object, where: str) -> list[dict]:
    """``records`` checked: a list of objects whose known fields have the right types."""
    if not isinstance(records, list):
        raise DataError(f"{where}: 'records' must be a list, got {type(records).__name__}")
    for i, rec in enumerate(records):
        at = f"{where}: record {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{at} must be an object, got {type(rec).__name__}")
        _check_fields(rec, RECORD_FIELDS, at)
        _check_fields(rec.get("settings") or {}, SETTING_FIELDS, f"{at} settings")
        bad = [k for k, v in (rec.get("metrics") or {}).items() if _bad(v, _NUMBER)]
        if bad:
            raise DataError(f"{at}: metric {bad[0]!r} must be a number or null, got "
                            f"{json.dumps(rec['metrics'][bad[0]])[:60]}")
    return records


def read_results(path: str | os.PathLike) -> list[dict]:
    """The records of a results file, its structure checked (DataError naming the file)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable results file ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:120]})") from None
    except RecursionError:
        raise DataError(f"{path}: unreadable results file (JSON nested too deeply)") from None
    if not isinstance(payload, dict):
        raise DataError(f"{path}: a results file is a JSON object with 'format' and 'records',"
                        f" got a {type(payload).__name__}")
    if payload.get("format") != RESULTS_FORMAT:
        raise DataError(f"{path}: unknown results format {payload.get('format')!r} "
                        f"(expected {RESULTS_FORMAT})")
    if "records" not in payload:
        raise DataError(f"{path}: results file has no 'records'")
    return check_records(payload["records"], str(path))


def load_cache(results_path: Path) -> list[dict]:
    """The records of an existing results file, each with its content ``hash`` ([] when
    there is no file)."""
    if not results_path.is_file():
        return []
    records = read_results(results_path)
    for i, rec in enumerate(records):
        if not isinstance(rec.get("hash"), str):
            raise DataError(f"{results_path}: record {i} has no content 'hash'")
    return records


def merge_records(existing: list[dict], fresh: dict[str, dict]) -> list[dict]:
    """``existing`` with the records of the same content hash replaced by ``fresh`` ones
    (in place), the new ones appended; no other record is dropped."""
    out, placed = [], set()
    for rec in existing:
        digest = rec["hash"]
        if digest not in fresh:
            out.append(rec)
        elif digest not in placed:
            out.append(fresh[digest])
            placed.add(digest)
    return out + [r for d, r in fresh.items() if d not in placed]


def save_records(results_path: Path, fresh: dict[str, dict]) -> None:
    """Merge ``fresh`` records into the results file (re-read under a lock, so that
    evaluations of other folders sharing the file are never lost) and write it atomically."""
    lock = results_path.with_name(f".{results_path.name}.lock")
    with exclusive_lock(lock, wait=True):
        remove_stale_temps(results_path)  # left by a killed writer: none is writing now
        records = merge_records(load_cache(results_path), fresh)
        payload = {"format": RESULTS_FORMAT, "records": records}
        atomic_write_text(json.dumps(payload, indent=1) + "\n", results_path)


def stored_name(path: Path, results_path: Path) -> str:
    """A model file's path as recorded: relative to the results file's folder when inside
    it, else absolute (both resolve from any working directory)."""
    path = path.resolve()
    try:
        return str(path.relative_to(results_path.resolve().parent))
    except ValueError:
        return str(path)


def reusable(rec: dict | None, settings: dict) -> bool:
    """A cached record is reused when it succeeded with the same settings (failures are
    retried)."""
    return rec is not None and rec.get("status") == "ok" and (
        json.dumps(rec.get("settings"), sort_keys=True) == json.dumps(settings, sort_keys=True))


def named_records(files: dict[str, Path], done: dict, results_path: Path) -> dict[str, dict]:
    """Records by content hash in file order, each naming its file; run states left out."""
    records = {}
    for digest, path in files.items():
        if done.get(digest) is not None:
            records[digest] = {**done[digest], "checkpoint": stored_name(path, results_path)}
    return records


def other_records(results_path: str | os.PathLike, records: list[dict]
                  ) -> tuple[list[dict], list[dict]]:
    """(kept, stale): records of the results file not in ``records``, and those of them
    whose model file no longer exists (listed, never deleted)."""
    results_path = Path(results_path)
    mine = {r["hash"] for r in records}
    kept = [r for r in load_cache(results_path) if r["hash"] not in mine]
    base = results_path.parent
    stale = [r for r in kept if not (base / str(r.get("checkpoint"))).is_file()]
    return kept, stale
