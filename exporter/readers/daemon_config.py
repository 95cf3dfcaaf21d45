"""dockerd's configuration as written: daemon.json, its command line and its systemd unit, as
dockerd itself reads them, and which of its keys are known, reloadable or secret. Decoding
only: the daemon collector's source reads the files (through /proc/PID/root) and the API."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from exporter.readers.docker_api import DEFAULT_DOCKER_HOST

log = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = "/etc/docker/daemon.json"
MAX_CONFIG_BYTES = 1 << 20  # dockerd's files are a few KB; anything this big is refused
# /info is asked again after a reload or a restart, and at least this often all the same.
INFO_MAX_AGE = 300.0

# Every daemon.json key dockerd has accepted (20.10 through 29), from its documentation.
KNOWN_KEYS = frozenset(
    """
allow-nondistributable-artifacts api-cors-header authorization-plugins bip bip6 bridge builder
bridge-accept-fwmark cdi-spec-dirs cgroup-parent cluster-advertise cluster-store
cluster-store-opts containerd containerd-namespace
containerd-plugins-namespace cpu-rt-period cpu-rt-runtime cri-containerd data-root debug
default-address-pools default-cgroupns-mode default-gateway default-gateway-v6 default-ipc-mode
default-network-opts default-runtime default-shm-size default-stop-timeout default-ulimits dns
dns-opts dns-search exec-opts exec-root experimental features firewall-backend fixed-cidr
fixed-cidr-v6 graph group host-gateway-ip host-gateway-ips hosts http-proxy https-proxy icc
init init-path insecure-registries ip ip-forward ip-forward-no-drop ip-masq ip6tables iptables
ipv6 labels live-restore log-driver log-format log-level log-opts max-concurrent-downloads
max-concurrent-uploads max-download-attempts min-api-version mtu network-control-plane-mtu
network-diagnostic-port no-new-privileges no-proxy nri-opts node-generic-resources
oom-score-adjust pidfile proxies raw-logs registry-mirrors allow-direct-routing runtimes
seccomp-profile selinux-enabled shutdown-timeout storage-driver storage-opts
swarm-default-advertise-addr tls tlscacert tlscert tlskey tlsverify userland-proxy
userland-proxy-path userns-remap validate
""".split()
)

Version = tuple[int, int]

# The keys not every engine knows: (first major.minor that accepts it, first that no longer
# does). An engine given a key it does not know refuses to start (and to reload). Read from the
# json tags of moby's daemon/config (and registry config) at every release tag, 20.10.0 to 29.7.2,
# and checked against the recorded engines' own `dockerd --validate` (tests/fixtures/engines).
KEY_VERSIONS: dict[str, tuple[Version | None, Version | None]] = {
    "http-proxy": ((23, 0), None),
    "https-proxy": ((23, 0), None),
    "no-proxy": ((23, 0), None),
    "proxies": ((23, 0), None),
    "default-network-opts": ((24, 0), None),
    "cdi-spec-dirs": ((25, 0), None),
    "log-format": ((25, 0), None),
    "bip6": ((28, 0), None),
    "host-gateway-ips": ((28, 0), None),
    "ip-forward-no-drop": ((28, 0), None),
    "allow-direct-routing": ((28, 2), None),
    "bridge-accept-fwmark": ((29, 0), None),
    "firewall-backend": ((29, 0), None),
    "min-api-version": ((29, 0), None),
    "nri-opts": ((29, 2), None),
    "default-stop-timeout": ((29, 7), None),
    "cluster-advertise": (None, (24, 0)),
    "cluster-store": (None, (24, 0)),
    "cluster-store-opts": (None, (24, 0)),
    "graph": (None, (24, 0)),
    "oom-score-adjust": (None, (26, 0)),
    "api-cors-header": (None, (29, 0)),
}
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
    return {DEFAULT_DOCKER_HOST if h in ("fd://", "") else h for h in hosts} or {
        DEFAULT_DOCKER_HOST
    }


def root_readable(root: Path) -> bool:
    """Can dockerd's files be read through its /proc/PID/root? The kernel asks for
    CAP_SYS_PTRACE over a process with more capabilities than ours."""
    try:
        root.stat()
    except PermissionError:
        return False
    return True


def read_config_file(root: Path, path: str) -> tuple[bytes | None, float | None, str | None]:
    """dockerd's configuration file as its own root shows it: (bytes, mtime, why unreadable).
    No file is (None, None, None): dockerd then runs on flags and defaults."""
    try:
        with (root / path.lstrip("/")).open("rb") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            return handle.read(MAX_CONFIG_BYTES + 1), mtime, None
    except FileNotFoundError:
        return None, None, None
    except OSError as exc:
        return None, None, f"cannot read {path}: {exc.strerror}"


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


def reloaded_values(event: dict[str, Any]) -> dict[str, str]:
    """The reloadable options a reload event says it applied."""
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    return {k: str(v) for k, v in attributes.items() if k in RELOADABLE}
