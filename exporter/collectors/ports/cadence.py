"""When the ports source reads a container's listeners again: pure functions of what it kept.

Each read of /proc/PID/net/tcp walks the kernel's whole TCP hash (~2 ms), so a listener is
read again where a change is likely: a container new or restarted (its PID 1 is another), its
processes changed (a process started, exited or exec'd: the (pid, start time, comm) of its
shim's descendants), or what stands before the listener on the port's path changed (its DNAT
or forward rules, its docker-proxy, its published ports and addresses). Otherwise on a cadence:
every container at least once per `runs` runs, the stalest first, spread evenly over the runs
(n / runs reads each run on average, never all at once)."""

from __future__ import annotations

import ipaddress
import math
import operator
from collections.abc import Collection, Iterable, Mapping

from exporter.readers.docker_api import ContainerRecord
from exporter.readers.netfilter import NetfilterReading
from exporter.readers.proc_net import ProxyProcess

# A rule as far as a port's verdict goes (no counters, no position: a rule deleted ahead of
# others shifts them without changing them).
RuleKey = tuple[object, ...]


def refresh_runs(refresh: float, interval: float) -> int:
    """The most runs between two readings of one container that keep each reading at most
    `refresh` seconds after the last, at one run per `interval`; at least one."""
    return max(1, math.floor(refresh / interval + 1e-9))


def due(
    last_read: Mapping[str, int | None],
    run: int,
    runs: int,
    triggered: Collection[str],
) -> frozenset[str]:
    """The containers to read at run `run` (counted from 0), from the run each was last read
    at (None: never, or not since its PID 1 changed): the triggered, the never read, those
    last read `runs` or more runs ago, and then the stalest others up to this run's share of
    n / runs (n / runs on average, as evenly as whole reads allow: 250 containers over 16 runs
    take 15 or 16 a run, 2 over 16 one every 8 runs). Read stalest first, every container comes
    round within `runs` runs; the overdue rule keeps that bound when containers come and go."""
    chosen = {
        name
        for name, last in last_read.items()
        if name in triggered or last is None or run - last >= runs
    }
    n = len(last_read)
    quota = math.ceil((run + 1) * n / runs) - math.ceil(run * n / runs)
    if len(chosen) < quota:
        rest = sorted(
            ((last, name) for name, last in last_read.items() if name not in chosen),
            key=lambda item: (item[0] if item[0] is not None else -1, item[1]),
        )
        chosen.update(name for _, name in rest[: quota - len(chosen)])
    return frozenset(chosen)


# The fields of a rule that say where it sends or lets through traffic, by kind of rule.
_NAT_FIELDS = (
    "backend",
    "family",
    "chain",
    "protocol",
    "dport",
    "to_address",
    "to_port",
    "destination",
    "in_interface",
    "in_negated",
)
_FILTER_FIELDS = (
    "backend",
    "family",
    "table",
    "chain",
    "verdict",
    "target",
    "destination",
    "destination_negated",
    "protocol",
    "dport",
    "in_interface",
    "out_interface",
)
_nat_key = operator.attrgetter(*_NAT_FIELDS)
_filter_key = operator.attrgetter(*_FILTER_FIELDS)
# Where a key (its kind first, then those fields) holds what names a container.
_DNAT_TO = 1 + _NAT_FIELDS.index("to_address")
_DNAT_PROTOCOL = 1 + _NAT_FIELDS.index("protocol")
_DNAT_PORT = 1 + _NAT_FIELDS.index("dport")
_FILTER_TO = 1 + _FILTER_FIELDS.index("destination")


def rule_keys(reading: NetfilterReading) -> frozenset[RuleKey]:
    """The rules that name a container's address: its DNAT (and the host port it takes) and
    the forward rules that accept or drop traffic to it."""
    nat = (("nat", *_nat_key(r)) for r in reading.nat_rules if r.to_address is not None)
    forward = (
        ("filter", *_filter_key(r)) for r in reading.filter.rules if r.destination is not None
    )
    return frozenset((*nat, *forward))


def _host(address: object) -> str | None:
    """A rule's address without its prefix length, canonical; None for a network wider than
    one host or nothing."""
    if not isinstance(address, str):
        return None
    try:
        network = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return None
    return str(network.network_address) if network.num_addresses == 1 else None


def touched(
    containers: Iterable[ContainerRecord], before: frozenset[RuleKey], after: frozenset[RuleKey]
) -> frozenset[str]:
    """The containers named by a rule that one of the two readings has and the other lacks:
    by their address (a DNAT's target, a forward rule's destination) or a DNAT's host port."""
    changed = before ^ after
    if not changed:
        return frozenset()
    addresses: set[str] = set()
    host_ports: set[tuple[object, object]] = set()
    for key in changed:
        if key[0] == "nat":
            addresses.add(_host(key[_DNAT_TO]) or "")
            host_ports.add((key[_DNAT_PROTOCOL], key[_DNAT_PORT]))
        else:
            addresses.add(_host(key[_FILTER_TO]) or "")
    return frozenset(
        c.id
        for c in containers
        if addresses & {*c.addresses, *c.ipv6_addresses}
        or any((p.protocol, p.host_port) in host_ports for p in c.ports)
    )


def proxied_containers(
    containers: Iterable[ContainerRecord], proxies: Iterable[ProxyProcess]
) -> frozenset[str]:
    """The containers the docker-proxy processes forward to (by address)."""
    addresses = {p.container_ip for p in proxies}
    return frozenset(
        c.id for c in containers if not addresses.isdisjoint((*c.addresses, *c.ipv6_addresses))
    )
