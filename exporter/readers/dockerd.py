"""Which dockerd serves --docker.host, and its settings as that dockerd resolves them: its
command line, else its daemon.json (read through its own root, /proc/PID/root, so that a
containerised exporter reads the host's file), else dockerd's default. One reading per tick
(tick.dockerd()) serves every collector that asks (daemon, nat, ports)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.readers.daemon_config import (
    DEFAULT_CONFIG_FILE,
    daemon_hosts,
    parse_config,
    parse_flags,
    read_config_file,
    root_readable,
)
from exporter.readers.procfs import DaemonProcess, ProcessScan, ProcfsReader, ProcStat

# Go's strconv.ParseBool, exactly: dockerd parses --iptables=<value> and its other boolean
# flags with it. Anything else is refused by dockerd ("invalid boolean value").
_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False, nothing else."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a Go boolean: {text!r}")


@dataclass(frozen=True)
class Dockerd:
    """The dockerd serving --docker.host, as one tick read it: its process, its flags and its
    configuration file. config is None when the file is absent, unreadable or not a JSON
    object (file_error says which of the latter two)."""

    process: DaemonProcess
    argv: tuple[str, ...]
    flags: Mapping[str, list[str]]  # config key -> the values given on the command line
    config_path: str
    config_path_explicit: bool  # --config-file given
    root_refused: bool  # /proc/PID/root refused (needs CAP_SYS_PTRACE): the file is not read
    file_present: bool
    file_mtime: float | None
    file_error: str | None
    config: Mapping[str, Any] | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def _file_value(self, key: str) -> tuple[object, bool]:
        """(value, known): the file's value for key (None: not set); known is False when the
        file could not be read, so that no default is claimed for it."""
        if self.root_refused or self.file_error is not None:
            return None, False
        return (self.config or {}).get(key), True

    def boolean(self, key: str, default: bool) -> tuple[bool | None, str]:
        """A boolean setting as dockerd resolves it, and what says so: "flag", "daemon.json" or
        "default". (None, "") when it cannot be told: an unreadable file, or a value dockerd
        itself would refuse to start with."""
        if key in self.flags:
            try:
                return parse_bool(self.flags[key][-1]), "flag"
            except ValueError:
                return None, ""
        value, known = self._file_value(key)
        if not known:
            return None, ""
        if value is None:
            return default, "default"
        return (value, "daemon.json") if isinstance(value, bool) else (None, "")

    def text(self, key: str, default: str) -> tuple[str | None, str]:
        """A string setting (e.g. "firewall-backend") as dockerd resolves it, and what says so."""
        if key in self.flags:
            return self.flags[key][-1], "flag"
        value, known = self._file_value(key)
        if not known:
            return None, ""
        if value is None:
            return default, "default"
        return (value, "daemon.json") if isinstance(value, str) else (None, "")


def serves_by_flags(argv: tuple[str, ...], docker_host: str) -> bool:
    """Whether this dockerd's command line says it serves docker_host (-H, or none: the
    default socket)."""
    return docker_host in daemon_hosts(parse_flags(argv)[0], None)


def serving(
    procfs: ProcfsReader, scan: ProcessScan, docker_host: str
) -> tuple[DaemonProcess, ProcStat | None, tuple[str, ...]] | None:
    """The dockerd serving docker_host by its flags (several may run: rootless, tests), else
    the only dockerd (its hosts may be set in daemon.json alone); None if neither."""
    others = []
    for daemon in scan.daemons:
        if daemon.name != "dockerd":
            continue
        argv = procfs.cmdline(daemon.pid)
        if not argv:
            continue  # gone mid-read
        stat = next((s for s in scan.table if s.pid == daemon.pid), None)
        if serves_by_flags(argv, docker_host):
            return daemon, stat, argv
        others.append((daemon, stat, argv))
    return others[0] if len(others) == 1 else None


def config_file_key(
    procfs_root: str | Path, daemon: DaemonProcess, argv: tuple[str, ...]
) -> object:
    """What tells whether dockerd's configuration file may have changed since a reading, from
    one stat through its root: (inode, size, mtime in ns), or why it could not be had. Taken
    before the file is read, so that a change during the read shows next time."""
    path = parse_flags(argv)[1] or DEFAULT_CONFIG_FILE
    try:
        st = Path(f"{procfs_root}/{daemon.pid}/root/{path.lstrip('/')}").stat()
    except OSError as exc:
        return ("unreadable", exc.errno)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_dockerd(procfs_root: str | Path, daemon: DaemonProcess, argv: tuple[str, ...]) -> Dockerd:
    """Its flags, and its configuration file as its own root shows it."""
    flags, config_file = parse_flags(argv)
    path = config_file or DEFAULT_CONFIG_FILE
    root = Path(f"{procfs_root}/{daemon.pid}/root")
    raw: bytes | None = None
    mtime: float | None = None
    error: str | None = None
    config: dict[str, Any] | None = None
    try:
        refused = not root_readable(root)
    except OSError as exc:  # gone since the scan: nothing said about its file
        refused, error = False, f"cannot read {path}: {exc.strerror}"
    if not refused and error is None:
        raw, mtime, error = read_config_file(root, path)
        if raw is not None:
            config, error = parse_config(raw)
    return Dockerd(
        process=daemon,
        argv=argv,
        flags=flags,
        config_path=path,
        config_path_explicit=config_file is not None,
        root_refused=refused,
        file_present=raw is not None,
        file_mtime=mtime,
        file_error=error,
        config=config,
    )
