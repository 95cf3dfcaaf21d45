"""The daemon collector's verdicts: each daemon.json key against the running dockerd, and
whether dockerd would start with the file at all. Pure."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.collectors.daemon.facts import DaemonConfigFacts
from exporter.readers.daemon_config import KEY_VERSIONS, KNOWN_KEYS, RELOADABLE, Version
from exporter.readers.docker_api import DockerNetwork

_LOOPBACK_REGISTRIES = "127.0.0.0/8"  # dockerd always trusts it; not the file's doing


_VERSION = re.compile(r"(\d+)\.(\d+)")


def engine_version(text: str | None) -> Version | None:
    """major.minor of a ServerVersion ("20.10.24+dfsg1", "29.7.2"); None if it has none."""
    match = _VERSION.match(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _shown(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def unknown_to(key: str, version: Version | None) -> str | None:
    """Why the engine of that version does not know the key (None: it does, or the version is
    not known and the key is one some engine knows)."""
    if key not in KNOWN_KEYS:
        return "no dockerd version knows it"
    if version is None or key not in KEY_VERSIONS:
        return None
    since, until = KEY_VERSIONS[key]
    if since is not None and version < since:
        return f"dockerd {_shown(version)} does not know it (Docker {_shown(since)} and later do)"
    if until is not None and version >= until:
        return f"dockerd {_shown(version)} no longer knows it (removed in {_shown(until)})"
    return None


@dataclass(frozen=True)
class KeyVerdict:
    """One key of daemon.json against the running daemon.

    verdict: in_sync, reload (a SIGHUP applies it), reload_will_fail (a SIGHUP would apply it,
    but dockerd refuses to reload the file as it is: reason says why), restart (pending: the
    file changed after dockerd started, only a restart applies it), drift (a restart-only key
    the daemon runs otherwise although the file is not newer than its start), conflict (also a
    command-line flag: dockerd will refuse to start), unknown_key (the running dockerd's version
    does not know it: it will refuse to start), or not_comparable (the running daemon does not
    say: unknown, never in sync).
    """

    key: str
    file_value: str
    running_value: str | None
    verdict: str
    applies_on: str  # reload or restart
    reason: str = ""

    @property
    def drift(self) -> bool | None:
        if self.verdict in ("not_comparable", "unknown_key", "conflict"):
            return None
        return self.verdict != "in_sync"

    @property
    def blocks_reload(self) -> bool:
        return self.verdict in ("unknown_key", "conflict")


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


def default_bridge(networks: Sequence[DockerNetwork] | None) -> DockerNetwork | None:
    return next((n for n in networks or () if n.name == "bridge" and n.driver == "bridge"), None)


def _gateway_cidr(family: int) -> Callable[[Any, DockerNetwork], Comparison]:
    """bip / bip6: the default bridge's gateway address with its subnet's prefix, as the
    Engine API reports the running network (dockerd gives docker0 that address)."""

    def compare(value: Any, bridge: DockerNetwork) -> Comparison:
        try:
            wanted = ipaddress.ip_interface(str(value))
        except ValueError:
            return None
        for subnet in bridge.subnets:
            network = ipaddress.ip_network(subnet, strict=False)
            if network.version != family:
                continue
            gateways = [g for g in bridge.gateways if (":" in g) == (family == 6)]
            gateway = gateways[0] if gateways else None
            running = f"{gateway}/{network.prefixlen}" if gateway else str(network)
            return running, wanted.network == network and str(wanted.ip) == gateway
        return None

    return compare


def _families(texts: Sequence[str], family: int) -> list[Any]:
    networks = (ipaddress.ip_network(t, strict=False) for t in texts)
    return [n for n in networks if n.version == family]


def _address_range(family: int) -> Callable[[Any, DockerNetwork], Comparison]:
    """fixed-cidr / fixed-cidr-v6: the default bridge's IPAM IPRange of that family, which
    dockerd sets from the key (20.10 through 29). Without one dockerd runs no such range: it
    gives addresses from the whole subnet, which the key may also name."""

    def compare(value: Any, bridge: DockerNetwork) -> Comparison:
        try:
            wanted = ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            return None
        if wanted.version != family:
            return None
        running = _families(bridge.ip_ranges, family) or _families(bridge.subnets, family)
        if not running:
            return None  # the family is not on the bridge: nothing to hold it against
        return [str(n) for n in running], wanted in running

    return compare


DEFAULT_MTU = 1500  # what dockerd runs with when mtu is not set (its config default)


def _mtu(value: Any, bridge: DockerNetwork) -> Comparison:
    """mtu: the default bridge's com.docker.network.driver.mtu, which dockerd (20.10 through
    29) sets from the key at start, default 1500, and gives each container's veth. docker0's own
    MTU is no witness: 20.10 never sets it, and a bridge takes its ports' smallest MTU."""
    try:
        wanted = int(value)
        running = int(bridge.mtu)
    except (TypeError, ValueError):
        return None  # no option (or not a number): the running MTU is not shown
    # 0: dockerd sets no MTU, so the kernel's default for a veth holds.
    wanted, running = wanted or DEFAULT_MTU, running or DEFAULT_MTU
    return running, wanted == running


# Restart-only network keys the running default bridge shows (GET /networks, which the nat
# collector reads).
_FROM_BRIDGE: dict[str, Callable[[Any, DockerNetwork], Comparison]] = {
    "bip": _gateway_cidr(4),
    "bip6": _gateway_cidr(6),
    "fixed-cidr": _address_range(4),
    "fixed-cidr-v6": _address_range(6),
    "mtu": _mtu,
}

# dockerd's own local-scope pools (libnetwork's ipamutils, 20.10 through 29) when the file sets
# none: 172.17.0.0/16 through 172.31.0.0/16 as /16 networks, 192.168.0.0/16 as /20 networks.
DEFAULT_POOLS_V4 = (
    (ipaddress.ip_network("172.17.0.0/16"), 16),
    (ipaddress.ip_network("172.18.0.0/15"), 16),
    (ipaddress.ip_network("172.20.0.0/14"), 16),
    (ipaddress.ip_network("172.24.0.0/13"), 16),
    (ipaddress.ip_network("192.168.0.0/16"), 20),
)

Pool = tuple[Any, int]  # (base network, the prefix length of each network cut from it)


def _pools(value: Any) -> list[Pool] | None:
    """default-address-pools as dockerd reads it: [{"base": CIDR, "size": n}, ...]."""
    if not isinstance(value, list) or not value:
        return None
    pools = []
    for pool in value:
        if not isinstance(pool, dict) or not isinstance(pool.get("size"), int):
            return None
        try:
            base = ipaddress.ip_network(str(pool.get("base")), strict=False)
        except ValueError:
            return None
        pools.append((base, pool["size"]))
    return pools


def _cut_from(subnet: Any, pools: Sequence[Pool]) -> bool:
    """Could the allocator have cut this subnet from one of the pools? Inside a base, and of
    the pool's size."""
    return any(
        subnet.version == base.version and subnet.prefixlen == size and subnet.subnet_of(base)
        for base, size in pools
    )


def address_pools(
    value: Any, networks: Sequence[DockerNetwork], started: float | None
) -> Comparison:
    """default-address-pools against the networks dockerd allocated since it started (the
    pools it runs with are in no answer of the Engine API). Whether a subnet was given at
    `docker network create` the API does not say either, so a subnet counts as allocated only
    by its shape: one the file's pools could have cut and dockerd's default pools could not
    (agrees), or the reverse (disagrees: dockerd allocates from its defaults). Any other
    subnet (explicit, or cut from pools of an older file) says nothing, nor do networks older
    than the daemon (allocated by an earlier one), the default bridge (its subnet may be
    docker0's old address) or a family the file sets no pool for. Nothing allocated: None."""
    pools = _pools(value)
    if pools is None or started is None:
        return None
    families = {base.version for base, _ in pools}
    agree: set[str] = set()
    disagree: set[str] = set()
    for network in networks:
        if network.driver != "bridge" or network.name == "bridge" or network.ingress:
            continue
        if network.created is None or network.created < started:
            continue
        for text in network.subnets:
            subnet = ipaddress.ip_network(text, strict=False)
            if subnet.version not in families:
                continue
            in_file = _cut_from(subnet, pools)
            in_defaults = _cut_from(subnet, DEFAULT_POOLS_V4)
            if in_file and not in_defaults:
                agree.add(str(subnet))
            elif in_defaults and not in_file:
                disagree.add(str(subnet))
    if disagree:
        return sorted(disagree), False
    if agree:
        return sorted(agree), True
    return None


def _running_value(
    key: str,
    value: Any,
    *,
    running: dict[str, Any],
    reloaded: dict[str, str] | None,
    bridge: DockerNetwork | None = None,
    networks: Sequence[DockerNetwork] | None = None,
    started: float | None = None,
) -> Comparison:
    if key == "default-address-pools":
        return address_pools(value, networks, started) if networks is not None else None
    if key in _FROM_INFO:
        return _FROM_INFO[key](value, running)
    if key in _FROM_BRIDGE:
        return _FROM_BRIDGE[key](value, bridge) if bridge is not None else None
    if reloaded is not None and key in reloaded:
        # The last reload event carries the values it applied.
        return reloaded[key], str(value).lower() == reloaded[key].lower()
    return None


def config_verdicts(
    daemon: DaemonConfigFacts, networks: Sequence[DockerNetwork] | None = None
) -> tuple[KeyVerdict, ...]:
    """Each key of the file against the running daemon. networks: Docker's networks as the
    Engine API lists them (the default bridge's running address and subnets), if read."""
    if daemon.file_error is not None:
        return ()
    running = json.loads(daemon.info) if daemon.info else None
    reloaded = json.loads(daemon.reloads[-1][1]) if daemon.reloads else None
    version = engine_version(running.get("ServerVersion")) if running else None
    bridge = default_bridge(networks)
    flags = set(daemon.flag_keys)
    verdicts = []
    for key, encoded in daemon.file_values:
        applies_on = "reload" if key in RELOADABLE else "restart"
        unknown = unknown_to(key, version)
        if unknown is not None:
            verdicts.append(KeyVerdict(key, encoded, None, "unknown_key", applies_on, unknown))
            continue
        if key in flags:
            verdicts.append(KeyVerdict(key, encoded, None, "conflict", applies_on))
            continue
        compared = (
            _running_value(
                key,
                json.loads(encoded),
                running=running,
                reloaded=reloaded,
                bridge=bridge,
                networks=networks,
                started=daemon.start_time,
            )
            if running
            else None
        )
        if compared is None:
            verdicts.append(KeyVerdict(key, encoded, None, "not_comparable", applies_on))
            continue
        value, agrees = compared
        verdicts.append(
            KeyVerdict(
                key,
                encoded,
                json.dumps(value, sort_keys=True),
                "in_sync" if agrees else _differs(daemon, applies_on),
                applies_on,
            )
        )
    return _with_reload_blocked(tuple(verdicts))


def _differs(daemon: DaemonConfigFacts, applies_on: str) -> str:
    """A restart-only key the daemon runs otherwise: pending ("restart") when the file changed
    after dockerd started, else "drift": dockerd started with this file (as far as its mtime
    tells) and still runs otherwise (live-restore kept the old default bridge, an address
    docker0 already had, ...), so a restart alone may not apply it."""
    if applies_on != "restart" or daemon.file_mtime is None or daemon.start_time is None:
        return applies_on
    return "drift" if daemon.file_mtime <= daemon.start_time else "restart"


def reload_blocker(verdicts: Sequence[KeyVerdict]) -> str | None:
    """Why dockerd would refuse a SIGHUP with the file as it is (it validates the whole file
    first: an unknown key or a key also given as a flag fails the reload), or None."""
    reasons = [
        f"{v.key}: {v.reason or 'unknown key'}"
        if v.verdict == "unknown_key"
        else f"{v.key} is also a command-line flag"
        for v in verdicts
        if v.blocks_reload
    ]
    return "; ".join(reasons) or None


def _with_reload_blocked(verdicts: tuple[KeyVerdict, ...]) -> tuple[KeyVerdict, ...]:
    why = reload_blocker(verdicts)
    if why is None:
        return verdicts
    return tuple(
        KeyVerdict(v.key, v.file_value, v.running_value, "reload_will_fail", v.applies_on, why)
        if v.verdict == "reload"
        else v
        for v in verdicts
    )


def last_load_time(daemon: DaemonConfigFacts) -> float | None:
    """When dockerd last read its file: its start, or its last reload."""
    times = [t for t in (daemon.start_time, *(t for t, _ in daemon.reloads)) if t is not None]
    return max(times) if times else None


def config_file_valid(daemon: DaemonConfigFacts) -> bool:
    """Would dockerd start with this file? Not with a broken file, keys its version does not
    know, a key also given as a flag, or an explicit --config-file that is missing."""
    if daemon.file_error is not None:
        return False
    if daemon.config_path_explicit and not daemon.file_present:
        return False
    return not any(v.blocks_reload for v in config_verdicts(daemon))
