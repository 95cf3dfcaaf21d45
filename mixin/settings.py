"""Settings for the generators (alert rules, dashboards): a frozen dataclass of defaults,
overridden from a YAML file and `--set key=value` flags. An unknown or ill-typed setting stops the
generator with a message naming it and what is known, never a silent default.

A generator declares its settings as a frozen dataclass whose fields all have defaults and whose
`__post_init__` may raise SettingsError, then calls `load(TheSettings, path, overrides)` (or
`add_arguments` + `from_arguments` with argparse). Values are str, int, float, bool or a
mapping of str to str; a file may hold only some keys."""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# Prometheus's duration syntax (model.ParseDuration): units largest first, each at most once.
DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


class SettingsError(ValueError):
    """A setting that is unknown, of the wrong type or out of range: the message says which."""


def duration_seconds(text: str) -> float:
    """A Prometheus duration ("1h30m") in seconds; SettingsError when it is not one."""
    if text == "0":
        return 0.0
    if not text or not DURATION.match(text):
        raise SettingsError(f"{text!r} is not a Prometheus duration (like 30s, 5m, 1h30m)")
    return sum(int(n) * _SECONDS[unit] for n, unit in re.findall(r"(\d+)(ms|[ywdhms])", text))


def check_duration(name: str, text: str) -> None:
    try:
        duration_seconds(text)
    except SettingsError as exc:
        raise SettingsError(f"setting {name}: {exc}") from None


def _kind(cls: type[Any], field: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[field.name]


def _coerce(name: str, kind: Any, value: Any) -> Any:
    if typing.get_origin(kind) is Mapping:
        if not isinstance(value, Mapping):
            raise SettingsError(f"setting {name}: wants a mapping, got {value!r}")
        return types.MappingProxyType(
            {str(k): _coerce(f"{name}.{k}", str, v) for k, v in value.items()}
        )
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(f"setting {name}: wants true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(f"setting {name}: wants an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SettingsError(f"setting {name}: wants a number, got {value!r}")
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise SettingsError(f"setting {name}: wants a string, got {value!r}")
    raise SettingsError(f"setting {name}: unsupported type {kind!r}")  # a generator's bug


def from_mapping(cls: type[T], values: Mapping[str, Any], source: str = "settings") -> T:
    """The defaults of cls with these values over them; SettingsError for an unknown key."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SettingsError(
            f"{source}: unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    coerced = {k: _coerce(k, _kind(cls, fields[k]), v) for k, v in values.items()}
    return cls(**coerced)


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` flags; the value is read as YAML (5m stays a string, 0.8 a number,
    {A: critical} a mapping)."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--set {pair!r}: wants key=value")
        try:
            found[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise SettingsError(f"--set {key}: not a YAML value: {exc}") from None
    return found


def read_file(path: str | Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise SettingsError(f"settings file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path}: not YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise SettingsError(f"settings file {path}: wants a mapping of setting: value")
    return {str(k): v for k, v in loaded.items()}


def load(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults, then the file, then `key=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_file(path))
    values.update(parse_overrides(overrides))
    source = str(path) if path is not None and not overrides else "settings"
    return from_mapping(cls, values, source)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", metavar="FILE", help="YAML mapping of setting: value")
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="one setting (the value is YAML); repeatable, wins over --settings",
    )


def from_arguments(cls: type[T], args: argparse.Namespace) -> T:
    return load(cls, args.settings, args.overrides)


def describe(cls: type[Any]) -> str:
    """Each setting, its default and what it is for (the field's metadata["help"])."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(default, Mapping):
            default = dict(default)
        lines.append(f"{f.name} (default {default!r}): {f.metadata.get('help', '')}")
    return "\n".join(lines)
