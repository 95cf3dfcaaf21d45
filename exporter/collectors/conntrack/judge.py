"""The conntrack collector's joins: each entry to the containers whose addresses it carries,
the rest to the host or to nobody; the table's fill level. Pure: recorded facts drive these."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.collectors.conntrack.facts import HOST, ConntrackFacts
from exporter.readers.ctnetlink import TCP_STATES, ConntrackTable

# The protocol label: TCP, UDP and ICMP (v4 and v6) by name, everything else (SCTP, GRE, ...)
# folded into "other", so that a container has four protocol series, never more.
PROTOCOLS = ("tcp", "udp", "icmp", "other")
_PROTOCOL_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}
# Unattributed entries: one end is the host's own address, or no end is anyone's we know.
UNATTRIBUTED = ("host", "unknown")


def protocol_name(number: int) -> str:
    return _PROTOCOL_NAMES.get(number, "other")


def tcp_state_name(state: int | None) -> str:
    if state is None:
        return "none"
    return TCP_STATES[state] if state < len(TCP_STATES) else str(state)


def usage_ratio(table: ConntrackTable) -> float | None:
    """Entries in use against the limit; None without a limit."""
    return table.entries / table.limit if table.limit > 0 else None


@dataclass
class ContainerConntrack:
    """One container's tracked connections: those whose original source is one of its addresses
    or whose reply source is (it was the destination, DNAT or not). Counted once per container
    even when both ends are its own."""

    name: str
    by_protocol: Counter[str] = field(default_factory=Counter)
    tcp_states: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.by_protocol.values())


def attribute(facts: ConntrackFacts) -> tuple[dict[str, ContainerConntrack], Counter[str]]:
    """Per container (every listed one, with zeros), and the unattributed entries by
    UNATTRIBUTED kind. Empty without a dump."""
    containers = {name: ContainerConntrack(name) for name in facts.containers or ()}
    unattributed: Counter[str] = Counter()
    if facts.dump is None:
        return containers, unattributed
    for row in facts.dump.rows:
        owners = {row.orig_owner, row.reply_owner}
        names = sorted(o for o in owners if o is not None and o != HOST)
        protocol = protocol_name(row.protocol)
        for name in names:
            counted = containers.setdefault(name, ContainerConntrack(name))
            counted.by_protocol[protocol] += row.entries
            if protocol == "tcp":
                counted.tcp_states[tcp_state_name(row.tcp_state)] += row.entries
        if not names:
            unattributed["host" if HOST in owners else "unknown"] += row.entries
    return containers, unattributed


def top_containers(facts: ConntrackFacts, k: int = 10) -> list[ContainerConntrack]:
    """The k containers holding the most entries, most first (then by name)."""
    containers, _ = attribute(facts)
    return sorted(containers.values(), key=lambda c: (-c.total, c.name))[:k]
