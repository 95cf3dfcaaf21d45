"""Frozen run-time settings, built from the command line by cli.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, cast

from exporter.options import Option
from exporter.readers.docker_api import DEFAULT_DOCKER_HOST

DEFAULT_PORT = 9747
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Prometheus-style durations: "15s", "1m30s", "500ms"; a bare number is seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"not a duration: {text!r} (use e.g. 15s, 2m, 500ms)") from None
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


def _no_intervals() -> Mapping[str, float]:
    return MappingProxyType({})


def _no_options() -> Mapping[Option[Any], object]:
    return MappingProxyType({})


T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    telemetry_path: str = "/metrics"
    web_config_file: str | None = None
    web_topology: bool = True  # serve /topology
    docker_host: str = DEFAULT_DOCKER_HOST
    procfs: str = "/proc"
    collectors: tuple[str, ...] = ()
    sample_interval: float = 15.0
    sample_timeout: float = 10.0
    collector_intervals: Mapping[str, float] = field(default_factory=_no_intervals)
    log_level: str = "info"
    log_format: str = "logfmt"
    max_series_per_family: int = 10000  # 0: no cap
    # The collectors' own flags (exporter.options.Option) given a value; the others take
    # their option's default.
    options: Mapping[Option[Any], object] = field(default_factory=_no_options)

    def __post_init__(self) -> None:
        # cli.py has parsed and checked its values; this catches Settings built by hand.
        for option, value in self.options.items():
            kind = type(option.default)
            if not isinstance(value, kind) and not (kind is float and type(value) is int):
                raise TypeError(f"option {option.name}: expected {kind.__name__}, got {value!r}")
            option.check(value)

    def __getitem__(self, option: Option[T]) -> T:
        """A collector's own flag: its value, else its default."""
        return cast(T, self.options.get(option, option.default))

    def interval(self, collector: str) -> float:
        return self.collector_intervals.get(collector, self.sample_interval)

    def timeout(self, collector: str) -> float:
        """Always shorter than the interval, so a run ends before the next one is due."""
        return min(self.sample_timeout, 0.8 * self.interval(collector))

    def call_timeout(self, collector: str, calls: int = 1) -> float:
        """For each of `calls` Engine API calls a run waits on in turn: short enough that a hung
        daemon is reported by the call's own timeout, the same reason every time, before the
        run's timeout, and that the run still ends in time to report what it read elsewhere."""
        return self.timeout(collector) / (2 * calls)


_LABEL_NAME_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def label_name(docker_label: str) -> str:
    """A Docker label key as a Prometheus label name: label_ and the key, other characters _."""
    return "label_" + _LABEL_NAME_INVALID.sub("_", docker_label)


def parse_label_allowlist(text: str) -> tuple[str, ...]:
    """--collector.containers.labels: comma-separated Docker label keys, exact names only."""
    keys = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    for key in keys:
        if "*" in key:
            raise ValueError(f"{key!r}: label keys are named one by one, no wildcards")
    names: dict[str, str] = {}
    for key in keys:
        if (other := names.setdefault(label_name(key), key)) != key:
            raise ValueError(f"{other!r} and {key!r} would both be exported as {label_name(key)}")
    return keys
