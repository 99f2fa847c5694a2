"""Offline label sources ("oracles") by name: classical potentials and DFT-trained teachers.

``get_oracle(name)`` returns a fresh ASE calculator. A dataset records its oracle name
so that downstream stages (relaxation / MD references) can rebuild it.

Trust: a name read from a file (dataset metadata, model file, plan, config, results) is
data and resolves only to the built-in oracles. ``module:pkg.mod:factory`` imports and calls
Python code, so it is honoured only with ``trusted=True``, which callers pass for a name the
user typed (``--oracle``) and never for a name read from a file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from mlip_scaling.errors import ConfigError

__all__ = ["ORACLES", "OracleInfo", "get_oracle", "check_oracle", "oracle_elements",
           "MixedOracle"]

EMT_METALS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
TERSOFF_SETS = {
    "SiC": "Tersoff_PRB_39_5566_Si_C",
    "Si": "Erhart_PRB_71_035211_Si",
    "C": "Brenner_PRB_42_9458_C_I",
    "PtC": "Albe_PRB_65_195124_PtC",
}


@dataclass(frozen=True)
class OracleInfo:
    """What an oracle name means and which elements it labels."""

    name: str
    elements: tuple[str, ...]
    description: str


ORACLES: dict[str, OracleInfo] = {
    "emt": OracleInfo("emt", EMT_METALS, "ASE effective-medium theory for fcc metals"),
    "sw": OracleInfo("sw", ("Si",), "Stillinger-Weber Si (matscipy, PRB 31 5262)"),
    "tersoff": OracleInfo("tersoff", ("Si", "C"), "Tersoff Si-C (matscipy, PRB 39 5566); "
                          "tersoff:SET with SET in " + ", ".join(TERSOFF_SETS)),
    "mixed:emt+sw": OracleInfo("mixed:emt+sw", (*EMT_METALS, "Si"),
                               "EMT for metal structures, Stillinger-Weber for Si structures"),
    "eam:FILE": OracleInfo("eam:FILE", (), "matscipy EAM from a setfl/funcfl file"),
    "teacher:sevennet": OracleInfo("teacher:sevennet", (), "SevenNet-0 (extra 'teacher')"),
    "teacher:chgnet": OracleInfo("teacher:chgnet", (), "CHGNet 0.3 (extra 'teacher')"),
    "module:factory": OracleInfo("module:factory", (), "any callable returning a calculator "
                                  "(typed on the command line only)"),
}


def _stillinger_weber() -> Calculator:
    from matscipy.calculators.manybody import Manybody
    from matscipy.calculators.manybody.explicit_forms import StillingerWeber
    from matscipy.calculators.manybody.explicit_forms.stillinger_weber import (
        Stillinger_Weber_PRB_31_5262_Si,
    )

    return Manybody(**StillingerWeber(Stillinger_Weber_PRB_31_5262_Si))


def _tersoff(param_set: str) -> Calculator:
    from matscipy.calculators.manybody import Manybody
    from matscipy.calculators.manybody.explicit_forms import TersoffBrenner
    from matscipy.calculators.manybody.explicit_forms import tersoff_brenner as tb

    name = TERSOFF_SETS.get(param_set, param_set)
    if name.startswith("_") or not isinstance(getattr(tb, name, None), dict):
        raise ConfigError(f"unknown Tersoff parameter set {param_set!r}; "
                          f"known: {', '.join(TERSOFF_SETS)}")
    return Manybody(**TersoffBrenner(getattr(tb, name)))


def _eam(path: str) -> Calculator:
    from matscipy.calculators.eam import EAM

    if not Path(path).is_file():
        raise ConfigError(f"eam oracle: no such potential file {path!r}")
    return EAM(path)


def _teacher(kind: str) -> Calculator:
    try:
        if kind == "sevennet":
            from sevenn.calculator import SevenNetCalculator

            return SevenNetCalculator("7net-0", device="cpu")
        if kind == "chgnet":
            from chgnet.model.dynamics import CHGNetCalculator

            return CHGNetCalculator(use_device="cpu")
    except ImportError:
        raise ConfigError(f"oracle 'teacher:{kind}' needs the optional extra: "
                          "pip install 'mlip-scaling[teacher]'") from None
    raise ConfigError(f"unknown teacher {kind!r}; known: sevennet, chgnet")


def _from_module(spec: str) -> Calculator:
    module, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"oracle 'module:{spec}': cannot import ({exc})") from None
    return factory()


class MixedOracle(Calculator):
    """Dispatch by chemistry: EMT for metal-only structures, Stillinger-Weber for Si-only."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self) -> None:
        super().__init__()
        self._emt: Calculator | None = None
        self._sw: Calculator | None = None

    def _pick(self, atoms: Atoms) -> Calculator:
        symbols = set(atoms.get_chemical_symbols())
        if symbols <= set(EMT_METALS):
            if self._emt is None:
                from ase.calculators.emt import EMT

                self._emt = EMT()
            return self._emt
        if symbols == {"Si"}:
            self._sw = self._sw or _stillinger_weber()
            return self._sw
        raise ConfigError(f"oracle mixed:emt+sw cannot label {atoms.get_chemical_formula()}: "
                          "structures must be metal-only (EMT) or Si-only (SW)")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        sub = self._pick(self.atoms)
        work = self.atoms.copy()
        work.calc = sub
        self.results = {"energy": work.get_potential_energy(), "forces": work.get_forces()}
        self.results["free_energy"] = self.results["energy"]
        if self.atoms.pbc.all():
            self.results["stress"] = work.get_stress()


_BUILTIN = "emt, sw, tersoff[:SET], eam:FILE, mixed:emt+sw, teacher:NAME"


def check_oracle(name: str, trusted: bool = False, where: str = "") -> str:
    """``name`` if it is a usable oracle spec, else ConfigError (nothing imported or built).

    ``trusted``: the user typed ``name`` (``--oracle``); only then may it be
    ``module:pkg.mod:factory``. ``where`` names the file or flag it came from.
    """
    where = f"{where}: " if where else ""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}oracle must be a non-empty name, got {name!r}")
    kind, _, arg = name.partition(":")
    if kind == "module" and arg and not trusted:
        raise ConfigError(
            f"{where}oracle {name!r} would import and run Python code; a name read from a "
            f"file may only be a built-in oracle ({_BUILTIN}); to run it, type "
            f"--oracle {name} on the command line"
        )
    known = name in ("emt", "sw", "mixed:emt+sw") or kind == "tersoff" or (
        kind in ("eam", "teacher", "module") and arg)
    if not known:
        raise ConfigError(f"{where}unknown oracle {name!r}; known: {', '.join(ORACLES)}")
    if kind == "eam" and not Path(arg).is_file():
        raise ConfigError(f"{where}eam oracle: no such potential file {arg!r}")
    return name


def get_oracle(name: str, trusted: bool = False, where: str = "") -> Calculator:
    """A fresh ASE calculator for oracle ``name`` (see :data:`ORACLES`).

    ``module:...`` names are imported and called only when ``trusted`` (typed by the user,
    never read from a file); see :func:`check_oracle`.
    """
    kind, _, arg = check_oracle(name, trusted, where).partition(":")
    if name == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if name == "sw":
        return _stillinger_weber()
    if kind == "tersoff":
        return _tersoff(arg or "SiC")
    if name == "mixed:emt+sw":
        return MixedOracle()
    if kind == "eam":
        return _eam(arg)
    if kind == "teacher":
        return _teacher(arg)
    return _from_module(arg)


def oracle_elements(name: str) -> tuple[str, ...]:
    """Elements an oracle labels (empty when it depends on its argument)."""
    if name.startswith("tersoff:"):
        param = name.split(":", 1)[1]
        return tuple(e for e in ("Si", "C", "Pt") if e in param) or ORACLES["tersoff"].elements
    info = ORACLES.get(name)
    return info.elements if info else ()
