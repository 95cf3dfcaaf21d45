"""The daemon collector's verdicts: each daemon.json key against the running dockerd, and
whether dockerd would start with the file at all. Pure."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.collectors.daemon.facts import DaemonConfigFacts
from exporter.readers.daemon_config import KNOWN_KEYS, RELOADABLE

_LOOPBACK_REGISTRIES = "127.0.0.0/8"  # dockerd always trusts it; not the file's doing


@dataclass(frozen=True)
class KeyVerdict:
    """One key of daemon.json against the running daemon.

    verdict: in_sync, reload (a SIGHUP applies it), restart (only a restart does), conflict (also
    a command-line flag: dockerd will refuse to start), unknown_key (dockerd will refuse to
    start), or not_comparable (the running daemon does not say).
    """

    key: str
    file_value: str
    running_value: str | None
    verdict: str
    applies_on: str  # reload or restart

    @property
    def drift(self) -> bool | None:
        if self.verdict in ("not_comparable", "unknown_key", "conflict"):
            return None
        return self.verdict != "in_sync"


def _as_set(value: Any) -> set[str]:
    return {str(v).rstrip("/") for v in value} if isinstance(value, list) else set()


Comparison = tuple[Any, bool] | None  # (what the daemon runs with, whether the file agrees)


def _field(name: str) -> Callable[[Any, dict[str, Any]], Comparison]:
    return lambda value, running: (running.get(name), value == running.get(name))


def _data_root(value: Any, running: dict[str, Any]) -> Comparison:
    root = str(running.get("DockerRootDir") or "")
    return root, str(value).rstrip("/") == root.rstrip("/")


def _labels(value: Any, running: dict[str, Any]) -> Comparison:
    labels = sorted(running.get("Labels") or [])
    return labels, isinstance(value, list) and sorted(map(str, value)) == labels


def _insecure_registries(value: Any, running: dict[str, Any]) -> Comparison:
    runs = set(running.get("InsecureRegistryCIDRs") or []) | set(
        running.get("InsecureRegistries") or []
    )
    runs -= {_LOOPBACK_REGISTRIES}
    return sorted(runs), _as_set(value) - {_LOOPBACK_REGISTRIES} == runs


def _mirrors(value: Any, running: dict[str, Any]) -> Comparison:
    mirrors = _as_set(running.get("Mirrors") or [])
    return sorted(mirrors), _as_set(value) == mirrors


def _runtimes(value: Any, running: dict[str, Any]) -> Comparison:
    runtimes = set(running.get("Runtimes") or [])
    return sorted(runtimes), isinstance(value, dict) and set(value) <= runtimes


def _exec_opts(value: Any, running: dict[str, Any]) -> Comparison:
    drivers = [
        str(v).split("=", 1)[1]
        for v in (value if isinstance(value, list) else [])
        if str(v).startswith("native.cgroupdriver=")
    ]
    if not drivers:
        return None
    return running.get("CgroupDriver"), drivers[-1] == running.get("CgroupDriver")


def _userns_remap(value: Any, running: dict[str, Any]) -> Comparison:
    remapped = any("name=userns" in o for o in running.get("SecurityOptions") or [])
    return remapped, bool(value) == remapped


# What GET /info can confirm, key by key.
_FROM_INFO: dict[str, Callable[[Any, dict[str, Any]], Comparison]] = {
    "debug": _field("Debug"),
    "live-restore": _field("LiveRestoreEnabled"),
    "storage-driver": _field("Driver"),
    "log-driver": _field("LoggingDriver"),
    "default-runtime": _field("DefaultRuntime"),
    "experimental": _field("ExperimentalBuild"),
    "data-root": _data_root,
    "labels": _labels,
    "insecure-registries": _insecure_registries,
    "registry-mirrors": _mirrors,
    "runtimes": _runtimes,
    "exec-opts": _exec_opts,
    "userns-remap": _userns_remap,
}


def _running_value(
    key: str, value: Any, running: dict[str, Any], reloaded: dict[str, str] | None
) -> Comparison:
    if key in _FROM_INFO:
        return _FROM_INFO[key](value, running)
    if reloaded is not None and key in reloaded:
        # The last reload event carries the values it applied.
        return reloaded[key], str(value).lower() == reloaded[key].lower()
    return None


def config_verdicts(daemon: DaemonConfigFacts) -> tuple[KeyVerdict, ...]:
    if daemon.file_error is not None:
        return ()
    running = json.loads(daemon.info) if daemon.info else None
    reloaded = json.loads(daemon.reloads[-1][1]) if daemon.reloads else None
    flags = set(daemon.flag_keys)
    verdicts = []
    for key, encoded in daemon.file_values:
        applies_on = "reload" if key in RELOADABLE else "restart"
        if key not in KNOWN_KEYS:
            verdicts.append(KeyVerdict(key, encoded, None, "unknown_key", applies_on))
            continue
        if key in flags:
            verdicts.append(KeyVerdict(key, encoded, None, "conflict", applies_on))
            continue
        compared = _running_value(key, json.loads(encoded), running, reloaded) if running else None
        if compared is None:
            verdicts.append(KeyVerdict(key, encoded, None, "not_comparable", applies_on))
            continue
        value, agrees = compared
        verdicts.append(
            KeyVerdict(
                key,
                encoded,
                json.dumps(value, sort_keys=True),
                "in_sync" if agrees else applies_on,
                applies_on,
            )
        )
    return tuple(verdicts)


def last_load_time(daemon: DaemonConfigFacts) -> float | None:
    """When dockerd last read its file: its start, or its last reload."""
    times = [t for t in (daemon.start_time, *(t for t, _ in daemon.reloads)) if t is not None]
    return max(times) if times else None


def config_file_valid(daemon: DaemonConfigFacts) -> bool:
    """Would dockerd start with this file? Not with a broken file, unknown keys, a key also
    given as a flag, or an explicit --config-file that is missing."""
    if daemon.file_error is not None:
        return False
    if daemon.config_path_explicit and not daemon.file_present:
        return False
    return all(v.verdict not in ("unknown_key", "conflict") for v in config_verdicts(daemon))
