"""The settings of an evaluation, defined once: ``evaluate``'s flags, ``report``'s overrides,
and the ``settings`` stored in every record (the evaluation of model files a report lacks
is :func:`mlip_scaling.scaling.evaluate.evaluate_missing`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlip_scaling.cli_args import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT
from mlip_scaling.options import option

__all__ = ["EvalSettings", "EVAL_KEYS", "K_RELAX", "MD_STEPS", "MD_MIN_LENGTH",
           "stored_settings"]

MD_MIN_LENGTH = 8.0  # Å: the MD cell is repeated until every cell height reaches this
K_RELAX = 20  # structures relaxed per model: enough for a standard error of each mean
MD_STEPS = 500  # NVE steps: a perfect model then reads drift < 1e-3 meV/atom/ps
PHONON_MIN_LENGTH = 8.0  # Å: default smallest height of the phonon supercell


@dataclass
class EvalSettings:
    """What an evaluation computes (units: K, Å); stored with every record."""

    oracle: str | None = option(None, "downstream reference calculator by name (default: the "
                                "oracle recorded in the dataset)")
    data: str | None = option(None, "dataset file (default: the one each model was trained on)")
    k_relax: int = option(K_RELAX, "test structures relaxed per model (>= 20 gives each "
                          "relaxation metric a usable error bar)", rule=NON_NEGATIVE_INT)
    md_steps: int = option(MD_STEPS, "NVE steps (1 fs) per model (>= 500 resolves drifts well "
                           "below 1 meV/atom/ps)", rule=NON_NEGATIVE_INT)
    relax_max_atoms: int | None = option(None, "downstream work only on test structures with "
                                         "at most this many atoms (default: all)",
                                         rule=POSITIVE_INT)
    md_min_length: float | None = option(None, "the MD cell is repeated until every height is "
                                         f">= this (Å; default {MD_MIN_LENGTH})", rule=POSITIVE)
    md_temperature: float = option(300.0, "MD temperature (K)", rule=POSITIVE)
    max_test: int | None = option(None, "cap on test structures", rule=POSITIVE_INT)
    downstream: bool = option(True, "test metrics only", flag_name="--no-downstream")
    # --- phonons and elastic constants (off unless asked for) ---
    k_phonon: int = option(0, "test structures whose phonon frequencies are compared "
                           "(0: off; each costs 2 relaxations and 12·atoms supercell force "
                           "calls)", rule=NON_NEGATIVE_INT)
    phonon_min_length: float | None = option(None, "phonon supercell: the cell repeated until "
                                             "every height is >= this (Å; default "
                                             f"{PHONON_MIN_LENGTH})", rule=POSITIVE)
    k_elastic: int = option(0, "test structures whose elastic constants are compared (0: off; "
                            "each costs 2 relaxations and 24 strained cells)",
                            rule=NON_NEGATIVE_INT)
    # --- end phonons and elastic constants ---

    def record(self) -> dict[str, Any]:
        """The ``settings`` of a record (a cached record is reused when they are equal):
        the dataset as an absolute path, no MD without downstream work, and the size caps
        and the phonon/elastic settings only when set (records written before they existed
        stay valid)."""
        out = dataclasses.asdict(self)
        out["data"] = str(Path(self.data).resolve()) if self.data else None
        out["md_steps"] = self.md_steps if self.downstream else 0
        for optional in ("relax_max_atoms", "md_min_length",
                         "k_phonon", "phonon_min_length", "k_elastic"):
            if not out[optional]:
                del out[optional]
        return out


#: Keys of a record's ``settings``.
EVAL_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EvalSettings))


def stored_settings(results: Path) -> dict[str, Any]:
    """The settings of the first record in ``results`` that has them (``{}`` without)."""
    from mlip_scaling.scaling.report import load_records

    if not results.is_file():
        return {}
    for rec in load_records(results):
        if isinstance(rec.get("settings"), dict):
            return {k: rec["settings"][k] for k in EVAL_KEYS if k in rec["settings"]}
    return {}
