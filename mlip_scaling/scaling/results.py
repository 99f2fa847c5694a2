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

__all__ = ["RESULTS_FORMAT", "read_results", "check_records"]

RESULTS_FORMAT = "mlip-scaling-results/1"

_NUMBER = (int, float)
#: record field -> accepted type(s); None is always accepted
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "checkpoint": str, "hash": str, "family": str, "model": str, "n_params": _NUMBER,
    "n_train": _NUMBER, "flops": _NUMBER, "dataset_name": str, "dataset_hash": str,
    "status": str, "error": str, "metrics": dict, "settings": dict,
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
    if not isinstance(payload, dict):
        raise DataError(f"{path}: a results file is a JSON object with 'format' and 'records',"
                        f" got a {type(payload).__name__}")
    if payload.get("format") != RESULTS_FORMAT:
        raise DataError(f"{path}: unknown results format {payload.get('format')!r} "
                        f"(expected {RESULTS_FORMAT})")
    if "records" not in payload:
        raise DataError(f"{path}: results file has no 'records'")
    return check_records(payload["records"], str(path))
