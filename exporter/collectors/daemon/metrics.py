"""The daemon collector's metric families and writer. Keys and verdicts only: no configuration
value is exported."""

from __future__ import annotations

import json

from exporter.collectors.daemon.facts import NAME, DaemonConfigFacts
from exporter.collectors.daemon.judge import (
    KeyVerdict,
    config_verdicts,
    last_load_time,
    reload_blocker,
)
from exporter.collectors.nat.facts import NatFacts
from exporter.metrics import Families, declare
from exporter.selfmetrics import PRIVILEGE_MISSING
from exporter.snapshot import Snapshot

DAEMON_INFO = declare(
    "daemon_info",
    "gauge",
    "What the running dockerd reports (GET /info); 1.",
    ("version", "storage_driver", "logging_driver", "cgroup_driver", "default_runtime"),
    collector=NAME,
)
FILE_INFO = declare(
    "daemon_config_file_info",
    "gauge",
    "The configuration file dockerd reads (--config-file, default /etc/docker/daemon.json); 1.",
    ("path", "explicit"),
    collector=NAME,
)
FILE_PRESENT = declare(
    "daemon_config_file_present",
    "gauge",
    "1 when the configuration file exists.",
    (),
    collector=NAME,
)
FILE_VALID = declare(
    "daemon_config_file_valid",
    "gauge",
    "0 when dockerd would refuse to start with the file as it is now: unreadable, not a JSON "
    "object, an unknown key, a key also given as a flag, or an explicit --config-file missing.",
    (),
    collector=NAME,
)
FILE_MTIME = declare(
    "daemon_config_file_modified_timestamp_seconds",
    "gauge",
    "When the configuration file was last modified, as Unix time.",
    (),
    collector=NAME,
)
CHANGED = declare(
    "daemon_config_changed_since_load",
    "gauge",
    "1 when the file was modified after dockerd last read it (its start or last reload).",
    (),
    collector=NAME,
)
LAST_RELOAD = declare(
    "daemon_last_reload_timestamp_seconds",
    "gauge",
    "When dockerd last reloaded its configuration (SIGHUP), from its reload events; absent if it "
    "has not since it started.",
    (),
    collector=NAME,
)
DRIFT = declare(
    "daemon_config_drift",
    "gauge",
    "1 when a key the file sets differs from what the running daemon reports (bip, bip6, "
    "fixed-cidr, fixed-cidr-v6, mtu: the default bridge as running; default-address-pools: the "
    "networks allocated since dockerd started); absent when the daemon does not show it. "
    "applies_on: reload (a SIGHUP applies it, unless daemon_config_file_valid is 0: then the "
    "reload fails) or restart (only a restart does; with daemon_config_changed_since_load 0, "
    "dockerd started with this file and still runs otherwise, so a restart alone may not).",
    ("key", "applies_on"),
    collector=NAME,
)
CONFLICT = declare(
    "daemon_config_flag_conflict",
    "gauge",
    "1 when a key is set both in the file and as a command-line flag: dockerd refuses to start "
    "like that, so the next restart fails.",
    ("key",),
    collector=NAME,
)
UNKNOWN_KEY = declare(
    "daemon_config_unknown_key",
    "gauge",
    "A key in the file the running dockerd's version does not know (or none does): dockerd "
    "refuses to start, or to reload, with it; 1.",
    ("key",),
    collector=NAME,
)
FLAG = declare(
    "daemon_command_line_flag",
    "gauge",
    "A configuration key dockerd was given on its command line: a SIGHUP never changes it; 1.",
    ("key",),
    collector=NAME,
)
UNIT_INFO = declare(
    "daemon_systemd_unit_info",
    "gauge",
    "The systemd unit that starts dockerd, and the EnvironmentFile it reads (DOCKER_OPTS set "
    "there are command-line flags); 1.",
    ("unit", "environment_file"),
    collector=NAME,
)


def write(snapshot: Snapshot, out: Families) -> None:
    daemon = snapshot.current(NAME, DaemonConfigFacts)
    if daemon is None:
        return
    if daemon.info:
        info = json.loads(daemon.info)
        out.add(
            DAEMON_INFO,
            1,
            str(info.get("ServerVersion") or ""),
            str(info.get("Driver") or ""),
            str(info.get("LoggingDriver") or ""),
            str(info.get("CgroupDriver") or ""),
            str(info.get("DefaultRuntime") or ""),
        )
    if daemon.pid is None:
        return  # no dockerd to hold the file against
    if daemon.root_refused:
        out.add(PRIVILEGE_MISSING, 1, NAME, "CAP_SYS_PTRACE")
        for key in daemon.flag_keys:
            out.add(FLAG, 1, key)
        return  # the file was not read: no verdict on it, rather than a false one
    # Docker's networks as running (GET /networks, read by the nat collector): the default
    # bridge for bip & co, the networks allocated since the start for default-address-pools.
    nat = snapshot.last_good("nat", NatFacts)
    networks = nat.expectations.networks if nat and nat.expectations else None
    verdicts = config_verdicts(daemon, networks)
    write_file(daemon, verdicts, out)
    write_keys(daemon, verdicts, out)
    if daemon.unit_path:
        out.add(UNIT_INFO, 1, daemon.unit_path, daemon.unit_environment_file)


def write_file(daemon: DaemonConfigFacts, verdicts: tuple[KeyVerdict, ...], out: Families) -> None:
    out.add(FILE_INFO, 1, daemon.config_path, str(daemon.config_path_explicit).lower())
    out.add(FILE_PRESENT, int(daemon.file_present))
    valid = (
        daemon.file_error is None
        and not (daemon.config_path_explicit and not daemon.file_present)
        and reload_blocker(verdicts) is None
    )
    out.add(FILE_VALID, int(valid))
    if daemon.file_mtime is not None:
        out.add(FILE_MTIME, daemon.file_mtime)
        loaded = last_load_time(daemon)
        if loaded is not None:
            out.add(CHANGED, int(daemon.file_mtime > loaded))
    if daemon.reloads:
        out.add(LAST_RELOAD, daemon.reloads[-1][0])


def write_keys(daemon: DaemonConfigFacts, verdicts: tuple[KeyVerdict, ...], out: Families) -> None:
    file_keys = {key for key, _ in daemon.file_values}
    for verdict in verdicts:
        if verdict.drift is not None:
            out.add(DRIFT, int(verdict.drift), verdict.key, verdict.applies_on)
        if verdict.verdict == "unknown_key":
            out.add(UNKNOWN_KEY, 1, verdict.key)
    if daemon.file_error is None:
        for key in sorted(file_keys):
            out.add(CONFLICT, int(key in daemon.flag_keys), key)
    for key in daemon.flag_keys:
        out.add(FLAG, 1, key)
