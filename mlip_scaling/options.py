"""Options defined once: dataclass fields that carry their help, rule and flag.

A settings dataclass (:class:`mlip_scaling.train_config.TrainConfig`, the evaluate settings)
declares each option with :func:`option`; its command-line flags (:func:`add_arguments`),
the reading of a mapping from a file (:func:`coerce_options`) and any per-option property
(e.g. "must not change on resume") are derived from those fields, so adding an option is
adding one field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlip_scaling.cli_args import Number
from mlip_scaling.errors import ConfigError

__all__ = ["option", "flag_name", "field_default", "add_arguments", "coerce_options",
           "fields_where", "json_mapping", "load_mapping"]


def option(default: Any = None, help: str = "", *, rule: Number | None = None,
           group: str = "", resume: bool = False, factory: Any = None,
           flag_name: str | None = None, split: Callable[[str], list] | None = None,
           **flag: Any) -> Any:
    """A dataclass field with its help text and, for numbers, the rule its values obey.

    ``group``: help section of its flag; ``resume``: must not change when a run is resumed;
    ``flag_name``: the flag when it is not ``--<name>`` (a true boolean's flag sets it
    false, e.g. ``--no-downstream``); ``split``: how the text of a list option is cut
    (default: at commas; the rule then applies to each item); ``flag``: extra argparse
    keywords (``choices``, ``nargs``, ``const``, ``metavar``).
    """
    meta = {"help": help, "rule": rule, "group": group, "resume": resume, "flag": flag,
            "flag_name": flag_name, "split": split or _comma_split}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _comma_split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def flag_name(name: str, f: dataclasses.Field | None = None) -> str:
    """``train_size`` -> ``--train-size`` (or the flag field ``f`` names)."""
    return (f.metadata.get("flag_name") if f else None) or "--" + name.replace("_", "-")


def json_mapping(text: str) -> dict:
    """argparse ``type=`` of a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _kind(cls: type, name: str) -> type:
    """The value type of field ``name`` (``int | None`` -> int)."""
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def field_default(f: dataclasses.Field) -> Any:
    """The default value of field ``f`` (a fresh one for a factory)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _argument(cls: type, f: dataclasses.Field, defaults: bool, help_prefix: str
              ) -> dict[str, Any]:
    """argparse keywords of field ``f``, derived from its type and metadata."""
    meta, kind = f.metadata, _kind(cls, f.name)
    kwargs: dict[str, Any] = {"help": help_prefix + meta["help"],
                              "default": field_default(f) if defaults else None}
    if kind is list:  # text, cut and checked by coerce_options
        default = field_default(f)
        kwargs["default"] = ",".join(map(str, default)) if defaults and default else None
    elif kind is bool:
        kwargs["action"] = "store_false" if field_default(f) else "store_true"
        kwargs["default"] = field_default(f) if defaults else None
    elif meta["rule"] is not None:
        kwargs["type"] = meta["rule"]
    elif kind is dict:
        kwargs["type"] = json_mapping
    return {**kwargs, **meta["flag"]}


def add_arguments(parser: argparse.ArgumentParser, cls: type, defaults: bool = True,
                  help_prefix: str = "") -> None:
    """Add one flag per field of dataclass ``cls`` (grouped by their ``group``).

    ``defaults=False``: every flag defaults to None (unset), e.g. for overrides of stored
    settings; ``help_prefix`` starts every help text.
    """
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        title = f.metadata["group"]
        if title and title not in groups:
            groups[title] = parser.add_argument_group(title)
        target = groups.get(title, parser)
        target.add_argument(flag_name(f.name, f), dest=f.name,
                            **_argument(cls, f, defaults, help_prefix))


def _coerce(cls: type, f: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` of field ``f`` read from a file, as the field's type (rule checked)."""
    if value is None and field_default(f) is None:
        return None
    kind, rule, flag = _kind(cls, f.name), f.metadata.get("rule"), flag_name(f.name, f)
    if kind is list:
        return _coerce_list(f, value, where + flag)
    if rule is not None:
        return rule.value(where + flag, value)
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}{flag} must be true or false, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where}{flag} must be text, got {value!r}")
    if kind is dict and not isinstance(value, dict):
        raise ConfigError(f"{where}{flag} must be a mapping, got {value!r}")
    return value


def _coerce_list(f: dataclasses.Field, value: Any, option_name: str) -> list:
    """A list option from text (cut by the field's ``split``) or a list; items checked by
    the field's rule."""
    if value is None:
        return []
    if isinstance(value, str):
        value = f.metadata["split"](value)
    elif not isinstance(value, list | tuple):
        value = [value]
    rule = f.metadata.get("rule")
    return [rule.value(option_name, item) if rule else str(item) for item in value]


def coerce_options(cls: type, options: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Options read from a file (keys with ``-`` or ``_``) as typed, checked values.

    Unknown keys and values of the wrong kind raise :class:`ConfigError` starting with
    ``where`` (e.g. ``"run.yaml: "``).
    """
    options = {str(k).replace("-", "_"): v for k, v in options.items()}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ConfigError(f"{where}unknown option(s) {', '.join(unknown)}")
    return {k: _coerce(cls, fields[k], v, where) for k, v in options.items()}


def fields_where(cls: type, key: str) -> tuple[str, ...]:
    """Names of the fields of ``cls`` whose metadata ``key`` is true, in field order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(key))


def load_mapping(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The mapping in YAML (or JSON) file ``path`` (``{}`` when empty); ``what`` names the
    kind of file in the one-line ConfigError (``config``, ``plan``)."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:160]})"
                          ) from None
    except RecursionError:
        raise ConfigError(f"{path}: {what} file nested too deeply") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a {what} file is a mapping of option: value")
    return loaded
