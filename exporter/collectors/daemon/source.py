"""The daemon collector's source: dockerd's configuration as written (daemon.json, command line,
systemd unit) and as running (GET /info, the daemon's reload events). Read-only: files are read
through the daemon's own root (/proc/PID/root), so a containerised exporter sees the host's
files, not its own.

Read again only on change: another dockerd process, its daemon.json or systemd unit changed (a
stat each), a daemon event (a reload) on the event stream the inventory follows, the stream
broken, or --collector.daemon.resync-interval passed. Otherwise a run returns the very same
facts, with no Engine API call and no file read (~4 ms a run before, most of it the reload
events' GET /events)."""

from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.collectors import Source
from exporter.collectors.daemon.facts import NAME, DaemonConfigFacts
from exporter.collectors.daemon.options import RESYNC_INTERVAL
from exporter.logonce import ChangeLog
from exporter.readers.daemon_config import (
    KNOWN_KEYS,
    SECRET_KEYS,
    parse_flags,
    redact,
    reloaded_values,
    running_subset,
    systemd_unit,
)
from exporter.readers.docker_api import DockerReader, DockerUnavailable
from exporter.readers.dockerd import Dockerd
from exporter.readers.inventory import Reason, StreamState
from exporter.readers.procfs import DaemonProcess
from exporter.settings import Settings
from exporter.tick import Tick

log = logging.getLogger(__name__)

# Where the systemd unit is looked for (readers.daemon_config.systemd_unit), for its stats.
_UNIT_FILES = (
    "etc/systemd/system/docker.service",
    "lib/systemd/system/docker.service",
    "usr/lib/systemd/system/docker.service",
)
_DROPINS = "etc/systemd/system/docker.service.d"


@dataclass(frozen=True)
class _Kept:
    """A reading and what it was read under: the same of all of them, the same facts."""

    dockerd: Dockerd | None
    stream: tuple[int, int]  # the event stream's (epoch, daemon events)
    units: object
    at: float
    facts: DaemonConfigFacts


def _stat_key(path: Path) -> object:
    try:
        st = path.stat()
    except OSError as exc:
        return exc.errno
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def units_key(root: Path) -> object:
    """The unit files' and drop-ins' stats: what tells whether the unit may have changed."""
    dropins = root / _DROPINS
    return (
        tuple(_stat_key(root / unit) for unit in _UNIT_FILES),
        _stat_key(dropins),
        tuple((p.name, _stat_key(p)) for p in sorted(dropins.glob("*.conf"))),
    )


def _describe(key: object) -> str:
    """An /info key in a log line: the dockerd (pid, start time) and its reloads' times."""
    if not isinstance(key, tuple):
        return "no dockerd found to serve --docker.host"
    pid, start_time, reloads = key
    return f"dockerd pid {pid} started at {start_time:.2f} with {len(reloads)} reloads"


class DaemonConfigSource:
    def __init__(self, docker_host: str, timeout: float, resync: float = 300.0) -> None:
        self.docker_host = docker_host
        self.resync = resync
        self._kept: _Kept | None = None
        self._last: DaemonConfigFacts | None = None
        self._api_failed = False  # the last reading's Engine API calls failed
        self._cached_info: tuple[object, float, dict[str, Any]] | None = None
        self._log = ChangeLog(log)
        self.docker = DockerReader(docker_host, timeout=timeout)

    def close(self) -> None:
        self.docker.close()

    def _warn_root_refused(self, pid: int, refused: bool) -> None:
        self._log.update(
            "root",
            "needs CAP_SYS_PTRACE" if refused else None,
            "cannot read dockerd's files through /proc/PID/root; daemon.json and the systemd "
            "unit are not judged",
            "dockerd's files are readable again",
            pid=str(pid),
        )

    def read(self, tick: Tick) -> DaemonConfigFacts:
        found = tick.dockerd()  # the very same reading while dockerd and its file stay
        stream = tick.host.inventory.stream()  # None: no stream followed, nothing told
        now = time.monotonic()
        units = None
        if found is not None and not found.root_refused:
            units = units_key(Path(f"{tick.host.procfs.root}/{found.pid}/root"))
        kept = self._kept
        if (
            kept is not None
            and found is kept.dockerd
            and stream is not None
            and (stream.epoch, stream.daemon) == kept.stream
            and units == kept.units
            and now - kept.at <= self.resync
        ):
            return kept.facts
        reason = self._reason(kept, stream, now)
        if reason is not None:
            tick.host.changes.reread(NAME, reason)
        facts = self._read(tick, found)
        self._log_problem(facts)
        self._last = facts
        self._kept = None
        if stream is not None and not self._api_failed:
            # No dockerd found to serve --docker.host (several run, none named by its flags) is
            # kept too: it stays so until the stream breaks or the interval passes.
            self._kept = _Kept(found, (stream.epoch, stream.daemon), units, now, facts)
        return facts

    def _reason(self, kept: _Kept | None, stream: StreamState | None, now: float) -> Reason | None:
        """Why dockerd's configuration is read again, if for a full re-read's reason
        (docker_host_full_rereads_total): not for a change seen, nor while no stream is
        followed (then every run reads, as it always did)."""
        if self._last is None:
            return "start"
        if kept is None:
            return "error" if self._api_failed else None
        if now - kept.at > self.resync:
            return "resync"
        if stream is None or stream.epoch != kept.stream[0]:
            return "lost_events"
        return None

    def _log_problem(self, facts: DaemonConfigFacts) -> None:
        """The file's trouble in the log, once per change."""
        problem = None
        keys = {key for key, _ in facts.file_values}
        unknown = sorted(keys - KNOWN_KEYS)
        conflicts = sorted(keys & set(facts.flag_keys))
        if facts.root_refused:
            problem = None  # not read, so not judged: _warn_root_refused said why
        elif facts.file_error:
            problem = f"{facts.config_path}: {facts.file_error}"
        elif facts.config_path_explicit and not facts.file_present:
            problem = f"{facts.config_path}: missing, and dockerd was started with --config-file"
        elif unknown:
            problem = f"{facts.config_path}: unknown keys {', '.join(unknown)}"
        elif conflicts:
            problem = (
                f"{facts.config_path}: keys also given as flags {', '.join(conflicts)}"
                " (dockerd refuses to start so)"
            )
        self._log.update(
            "file",
            problem,
            "dockerd would not start with its configuration file",
            "dockerd's configuration file is readable again",
        )

    def _info(self, daemon: DaemonProcess | None, reloads: list[dict[str, Any]]) -> dict[str, Any]:
        """GET /info, asked again only when the running configuration may have changed: another
        dockerd, or a reload since. It costs dockerd ~4.5 ms of CPU; the event log next to none."""
        key = None
        if daemon is not None:
            key = (daemon.pid, daemon.start_time, tuple(e.get("timeNano") for e in reloads))
        now = time.monotonic()
        if key is not None and self._cached_info is not None:
            cached_key, asked_at, info = self._cached_info
            if cached_key == key and now - asked_at <= self.resync:
                return info
        if self._cached_info is not None and self._cached_info[0] != key:
            # Rare (dockerd restarted or reloaded, or which dockerd serves was unclear): said,
            # so that a GET /info more than expected can be told from the log.
            log.info(
                "dockerd's running configuration read again: was %s, now %s",
                _describe(self._cached_info[0]),
                _describe(key),
            )
        info = self.docker.info()
        self._cached_info = (key, now, info)  # a None key is never matched: no dockerd known
        return info

    def _read(self, tick: Tick, found: Dockerd | None) -> DaemonConfigFacts:
        info: dict[str, Any] | None = None
        reloads: list[dict[str, Any]] = []
        docker_error: str | None = None
        try:
            if found is not None:
                reloads = self.docker.reload_events(
                    since=found.process.start_time, until=time.time()
                )
            info = self._info(found.process if found else None, reloads)
        except DockerUnavailable as exc:
            # The kept /info stays: its key (the dockerd, its reloads) says when it is stale,
            # and a call that timed out on a busy host is no reason to ask dockerd for more.
            docker_error = str(exc)
        self._api_failed = docker_error is not None
        if found is None:
            subset = json.dumps(running_subset(info), sort_keys=True) if info else None
            return DaemonConfigFacts.unknown(docker_error or "no dockerd process found", subset)
        daemon, config = found.process, found.config
        self._warn_root_refused(daemon.pid, refused=found.root_refused)
        unit = exec_start = environment_file = ""
        if not found.root_refused:
            root = Path(f"{tick.host.procfs.root}/{daemon.pid}/root")
            unit, exec_start, environment_file = systemd_unit(root)
        return DaemonConfigFacts(
            pid=daemon.pid,
            start_time=daemon.start_time,
            flag_keys=tuple(sorted(found.flags)),
            config_path=found.config_path,
            config_path_explicit=found.config_path_explicit,
            file_present=found.file_present,
            file_error=found.file_error,
            file_mtime=found.file_mtime,
            file_values=tuple(
                sorted(
                    (
                        k,
                        '"(redacted)"'
                        if k in SECRET_KEYS
                        else redact(json.dumps(v, sort_keys=True)),
                    )
                    for k, v in (config or {}).items()
                )
            ),
            info=json.dumps(running_subset(info), sort_keys=True) if info is not None else None,
            reloads=tuple(
                (
                    float(e.get("timeNano", 0)) / 1e9,
                    redact(json.dumps(reloaded_values(e), sort_keys=True)),
                )
                for e in reloads
            ),
            docker_error=docker_error,
            unit_path=unit,
            unit_exec_start=exec_start,
            unit_environment_file=environment_file,
            unit_flag_keys=tuple(sorted(parse_flags(tuple(shlex.split(exec_start)))[0]))
            if exec_start
            else (),
            root_refused=found.root_refused,
        )


def build(settings: Settings) -> Source:
    # Two calls a run (the reload events, and /info after a reload): the file is judged even
    # while dockerd does not answer.
    timeout = settings.call_timeout(NAME, calls=2)
    return DaemonConfigSource(settings.docker_host, timeout, settings[RESYNC_INTERVAL])
