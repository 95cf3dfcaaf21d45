"""dockerd's configuration as written (daemon.json, command line, systemd unit) and as running
(GET /info, the daemon's reload events). Read-only: files are read through the daemon's own
root (/proc/PID/root), so a containerised exporter sees the host's files, not its own."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any

from exporter.facts import DaemonConfigFacts, DaemonProcess
from exporter.readers.docker_api import DockerReader, DockerUnavailable
from exporter.readers.procfs import ProcStat, shared_reader

log = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = "/etc/docker/daemon.json"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
MAX_CONFIG_BYTES = 1 << 20  # dockerd's files are a few KB; anything this big is refused
# /info is asked again after a reload or a restart, and at least this often all the same.
INFO_MAX_AGE = 300.0

# Every daemon.json key dockerd has accepted (20.10 through 29), from its documentation.
KNOWN_KEYS = frozenset(
    """
allow-nondistributable-artifacts api-cors-header authorization-plugins bip bip6 bridge builder
cdi-spec-dirs cgroup-parent cluster-advertise cluster-store cluster-store-opts containerd
containerd-namespace containerd-plugin-namespace containerd-plugins-namespace cpu-rt-period
cpu-rt-runtime cri-containerd data-root debug default-address-pools default-cgroupns-mode
default-gateway default-gateway-v6 default-ipc-mode default-network-opts default-runtime
default-shm-size default-ulimits dns dns-opts dns-search exec-opts exec-root experimental
features firewall-backend fixed-cidr fixed-cidr-v6 group host-gateway-ip host-gateway-ips hosts
http-proxy https-proxy icc init init-path insecure-registries ip ip-forward ip-forward-no-drop
ip-masq ip6tables iptables ipv6 labels live-restore log-driver log-format log-level log-opts
max-concurrent-downloads max-concurrent-uploads max-download-attempts mtu
network-control-plane-mtu network-diagnostic-port no-new-privileges no-proxy
node-generic-resources oom-score-adjust pidfile proxies raw-logs registry-mirrors
allow-direct-routing runtimes seccomp-profile selinux-enabled shutdown-timeout storage-driver
storage-opts swarm-default-advertise-addr tls tlscacert tlscert tlskey tlsverify userland-proxy
userland-proxy-path userns-remap validate
""".split()
)

# Options dockerd applies on SIGHUP (daemon/reload.go); any other change needs a restart.
RELOADABLE = frozenset(
    """
allow-nondistributable-artifacts debug default-runtime features insecure-registries labels
live-restore max-concurrent-downloads max-concurrent-uploads max-download-attempts
network-diagnostic-port registry-mirrors runtimes shutdown-timeout
""".split()
)

# Flags whose config key is not the flag's own long name.
FLAG_KEYS = {
    "D": "debug", "l": "log-level", "G": "group", "H": "hosts", "host": "hosts",
    "b": "bridge", "p": "pidfile", "s": "storage-driver", "g": "data-root", "graph": "data-root",
    "insecure-registry": "insecure-registries", "registry-mirror": "registry-mirrors",
    "label": "labels", "exec-opt": "exec-opts", "storage-opt": "storage-opts",
    "log-opt": "log-opts", "dns-opt": "dns-opts", "default-ulimit": "default-ulimits",
    "add-runtime": "runtimes", "authorization-plugin": "authorization-plugins",
    "node-generic-resource": "node-generic-resources",
    "default-address-pool": "default-address-pools", "cluster-store-opt": "cluster-store-opts",
    "default-network-opt": "default-network-opts", "cdi-spec-dir": "cdi-spec-dirs",
}  # fmt: skip
BOOL_FLAGS = frozenset(
    """
D debug live-restore experimental iptables ip6tables ip-forward ip-masq icc ipv6 userland-proxy
selinux-enabled no-new-privileges raw-logs tls tlsverify init validate version help v h
""".split()
)
NOT_CONFIG = frozenset({"config-file", "validate", "version", "help", "v", "h"})


# Keys whose values may carry credentials: compared by nobody, shown to nobody.
SECRET_KEYS = frozenset({"http-proxy", "https-proxy", "no-proxy", "proxies", "tlskey"})
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s\"]+@")


def redact(text: str) -> str:
    """Credentials in URLs (https://user:pass@mirror) never leave the reader."""
    return _URL_USERINFO.sub("", text)


def running_subset(info: dict[str, Any]) -> dict[str, Any]:
    """The part of GET /info the file is compared with: no proxies, no names, no ids."""
    registry = info.get("RegistryConfig") or {}
    return {
        "Debug": info.get("Debug"),
        "LiveRestoreEnabled": info.get("LiveRestoreEnabled"),
        "Labels": info.get("Labels") or [],
        "Driver": info.get("Driver"),
        "LoggingDriver": info.get("LoggingDriver"),
        "CgroupDriver": info.get("CgroupDriver"),
        "DefaultRuntime": info.get("DefaultRuntime"),
        "Runtimes": sorted(info.get("Runtimes") or {}),
        "DockerRootDir": info.get("DockerRootDir"),
        "ExperimentalBuild": info.get("ExperimentalBuild"),
        "SecurityOptions": info.get("SecurityOptions") or [],
        "InsecureRegistryCIDRs": registry.get("InsecureRegistryCIDRs") or [],
        "InsecureRegistries": sorted(
            name
            for name, index in (registry.get("IndexConfigs") or {}).items()
            if not (index or {}).get("Secure", True)
        ),
        "Mirrors": [redact(m) for m in registry.get("Mirrors") or []],
        "ServerVersion": info.get("ServerVersion"),
    }


def parse_flags(argv: tuple[str, ...]) -> tuple[dict[str, list[str]], str | None]:
    """dockerd's argv -> {config key: values}, and its --config-file if given."""
    keys: dict[str, list[str]] = {}
    config_file: str | None = None
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        if not has_value and name not in BOOL_FLAGS and i < len(args):
            value = args[i]
            i += 1
        if name == "config-file":
            config_file = value
        if name in NOT_CONFIG:
            continue
        keys.setdefault(FLAG_KEYS.get(name, name), []).append(
            value if has_value or name not in BOOL_FLAGS else "true"
        )
    return keys, config_file


def parse_config(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Strictly, as dockerd would: a JSON object, nothing else. (config, error)."""
    if len(raw) > MAX_CONFIG_BYTES:
        return None, f"file is {len(raw)} bytes, larger than {MAX_CONFIG_BYTES}"
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8: {exc.reason} at byte {exc.start}"
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return None, "not JSON: nested too deeply"
    if not isinstance(config, dict):
        return None, f"not a JSON object but {type(config).__name__}"
    return config, None


def daemon_hosts(flags: dict[str, list[str]], config: dict[str, Any] | None) -> set[str]:
    hosts = set(flags.get("hosts", []))
    if config and isinstance(config.get("hosts"), list):
        hosts |= {str(h) for h in config["hosts"]}
    # fd:// is systemd socket activation of the default socket.
    return {DEFAULT_SOCKET if h in ("fd://", "") else h for h in hosts} or {DEFAULT_SOCKET}


def systemd_unit(root: Path) -> tuple[str, str, str]:
    """(unit path, ExecStart, EnvironmentFile) of docker.service, as dockerd's root sees it."""
    for unit in (
        "etc/systemd/system/docker.service",
        "lib/systemd/system/docker.service",
        "usr/lib/systemd/system/docker.service",
    ):
        path = root / unit
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        dropins = sorted((root / "etc/systemd/system/docker.service.d").glob("*.conf"))
        for dropin in dropins:
            try:
                text += "\n" + dropin.read_text(errors="replace")
            except OSError:
                continue
        exec_start = environment = ""
        for line in text.splitlines():
            key, _, value = line.strip().partition("=")
            if key == "ExecStart" and value:
                exec_start = value  # the last non-empty one wins, as in systemd
            elif key == "EnvironmentFile":
                environment = value.lstrip("-")
        return "/" + unit, exec_start, environment
    return "", "", ""


def _reloaded(event: dict[str, Any]) -> dict[str, str]:
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    return {k: str(v) for k, v in attributes.items() if k in RELOADABLE}


class DaemonConfigReader:
    def __init__(self, procfs: str | Path, docker_host: str, timeout: float) -> None:
        self.procfs = shared_reader(str(procfs))
        self.docker_host = docker_host
        # The dockerd found last time, as (its stat then, argv): checked with one stat read.
        self._known: tuple[ProcStat, DaemonProcess, tuple[str, ...]] | None = None
        self._cached_info: tuple[object, float, dict[str, Any]] | None = None
        self._root_refused = False
        self.docker = DockerReader(docker_host, timeout=timeout)
        self._last_problem: str | None = None

    def close(self) -> None:
        self.docker.close()

    def _daemon(self) -> tuple[DaemonProcess, tuple[str, ...]] | None:
        """The dockerd serving --docker.host (several may run: rootless, tests)."""
        if self._known is not None:
            before, daemon, argv = self._known
            if self.procfs.same_process(before):
                return daemon, argv  # the same dockerd: same pid, same start
            self._known = None
        scan = self.procfs.scan(shared_with="daemon")
        candidates = []
        for daemon in scan.daemons:
            if daemon.name != "dockerd":
                continue
            argv = self.procfs.cmdline(daemon.pid)
            flags, _ = parse_flags(argv)
            if self.docker_host in daemon_hosts(flags, None):
                # Serves our socket by its flags: the same process will as long as it lives.
                stat = next((s for s in scan.table if s.pid == daemon.pid), None)
                if stat is not None:
                    self._known = (stat, daemon, argv)
                return daemon, argv
            candidates.append((daemon, argv))
        # Hosts set only in daemon.json: fall back to the one dockerd when there is one.
        return candidates[0] if len(candidates) == 1 else None

    def _warn_root_refused(self, pid: int, refused: bool) -> None:
        if refused and not self._root_refused:
            log.warning(
                "cannot read dockerd's files through /proc/PID/root: needs CAP_SYS_PTRACE; "
                "daemon.json and the systemd unit are not judged",
                extra={"pid": pid},
            )
        elif self._root_refused and not refused:
            log.info("dockerd's files are readable again")
        self._root_refused = refused

    def read(self) -> DaemonConfigFacts:
        facts = self._read()
        self._log_problem(facts)
        return facts

    def _log_problem(self, facts: DaemonConfigFacts) -> None:
        """The file's trouble in the log, once per change."""
        problem = None
        keys = {key for key, _ in facts.file_values}
        unknown = sorted(keys - KNOWN_KEYS)
        conflicts = sorted(keys & set(facts.flag_keys))
        if facts.root_refused:
            problem = None  # not read, so not judged: _warn_root_refused says why
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
        if problem != self._last_problem:
            if problem:
                log.warning(
                    "dockerd would not start with its configuration file", extra={"reason": problem}
                )
            else:
                log.info("dockerd's configuration file is readable again")
            self._last_problem = problem

    def _info(self, daemon: DaemonProcess | None, reloads: list[dict[str, Any]]) -> dict[str, Any]:
        """GET /info, asked again only when the running configuration may have changed: another
        dockerd, or a reload since. It costs dockerd ~4.5 ms of CPU; the event log next to none."""
        key = None
        if daemon is not None:
            key = (daemon.pid, daemon.start_time, tuple(e.get("timeNano") for e in reloads))
        now = time.monotonic()
        if key is not None and self._cached_info is not None:
            cached_key, asked_at, info = self._cached_info
            if cached_key == key and now - asked_at <= INFO_MAX_AGE:
                return info
        info = self.docker.info()
        self._cached_info = (key, now, info) if key is not None else None
        return info

    def _read(self) -> DaemonConfigFacts:
        found = self._daemon()
        info: dict[str, Any] | None = None
        reloads: list[dict[str, Any]] = []
        docker_error: str | None = None
        try:
            if found is not None:
                reloads = self.docker.reload_events(since=found[0].start_time, until=time.time())
            info = self._info(found[0] if found else None, reloads)
        except DockerUnavailable as exc:
            docker_error = str(exc)
            self._cached_info = None
        if found is None:
            subset = json.dumps(running_subset(info), sort_keys=True) if info else None
            return DaemonConfigFacts.unknown(docker_error or "no dockerd process found", subset)
        daemon, argv = found
        flags, config_file = parse_flags(argv)
        path = config_file or DEFAULT_CONFIG_FILE
        root = Path(f"{self.procfs.root}/{daemon.pid}/root")
        file_path = root / path.lstrip("/")
        raw: bytes | None = None
        mtime: float | None = None
        file_error: str | None = None
        try:
            root.stat()
            root_refused = False
        except PermissionError:
            root_refused = True
        self._warn_root_refused(daemon.pid, refused=root_refused)
        unit = exec_start = environment_file = ""
        if not root_refused:
            try:
                with file_path.open("rb") as handle:
                    mtime = os.fstat(handle.fileno()).st_mtime
                    raw = handle.read(MAX_CONFIG_BYTES + 1)
            except FileNotFoundError:
                pass  # no file: dockerd runs on flags and defaults (unless --config-file said)
            except OSError as exc:
                file_error = f"cannot read {path}: {exc.strerror}"
            unit, exec_start, environment_file = systemd_unit(root)
        config, parse_error = parse_config(raw) if raw is not None else (None, None)
        return DaemonConfigFacts(
            pid=daemon.pid,
            start_time=daemon.start_time,
            flag_keys=tuple(sorted(flags)),
            config_path=path,
            config_path_explicit=config_file is not None,
            file_present=raw is not None,
            file_error=file_error or parse_error,
            file_mtime=mtime,
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
                    redact(json.dumps(_reloaded(e), sort_keys=True)),
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
            root_refused=root_refused,
        )
