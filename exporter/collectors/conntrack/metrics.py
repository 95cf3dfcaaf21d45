"""The conntrack collector's metric families and writer.

Per container: a total per protocol (tcp, udp, icmp, other: always four series, zeros
included, so an idle container reads 0 rather than nothing), and TCP entries by state only for
the states it holds entries in. States of UDP and ICMP say little (unreplied or not), and ten
TCP states for every container would be 2.5x the series for mostly zeros: with 250 containers,
1,000 protocol series plus a few state series each, not 250 x 4 x 10.
"""

from __future__ import annotations

from collections import Counter

from exporter.collectors.conntrack.facts import NAME, ConntrackFacts
from exporter.collectors.conntrack.judge import PROTOCOLS, UNATTRIBUTED, attribute
from exporter.collectors.containers.judge import inventory
from exporter.memo import last_answer
from exporter.metrics import Families, declare
from exporter.selfmetrics import PRIVILEGE_MISSING
from exporter.snapshot import Snapshot

AVAILABLE = declare(
    "conntrack_available",
    "gauge",
    "1 when the kernel tracks connections in the host's network namespace (nf_conntrack "
    "loaded); 0: nothing else of conntrack is exported.",
    collector=NAME,
)
ENTRIES = declare(
    "conntrack_entries",
    "gauge",
    "Entries in the host's connection-tracking table (nf_conntrack_count).",
    collector=NAME,
)
LIMIT = declare(
    "conntrack_entries_limit",
    "gauge",
    "The most entries the table holds (nf_conntrack_max); when full, new connections are dropped.",
    collector=NAME,
)
BUCKETS = declare(
    "conntrack_buckets",
    "gauge",
    "Size of the table's hash (nf_conntrack_buckets).",
    collector=NAME,
)
STATS = {
    name: declare(
        f"conntrack_stat_{name}",
        "counter",
        text + " Summed over CPUs, from /proc/net/stat/nf_conntrack.",
        collector=NAME,
    )
    for name, text in (
        ("insert_failed", "New entries that could not be inserted (a clash, or a full table)."),
        ("drop", "Packets dropped because a new entry could not be made (the table is full)."),
        ("early_drop", "Entries evicted early to make room for new ones (the table is full)."),
        ("search_restart", "Table lookups restarted because the hash was resized or changed."),
        ("invalid", "Packets that could not be tracked (malformed, or out of a connection's "
                    "window)."),
    )
}  # fmt: skip
DUMP_SUCCESS = declare(
    "conntrack_dump_success",
    "gauge",
    "1 when this run's ctnetlink dump of the table was read to its end or its cap; 0: refused "
    "(privilege_missing says for what), failed, or interrupted twice by the kernel, and no "
    "per-container counts are exported.",
    collector=NAME,
)
DUMP_ENTRIES = declare(
    "conntrack_dump_entries",
    "gauge",
    "Entries read by the last dump, by family; IPv6 is dumped only when a container has an "
    "IPv6 address.",
    ("family",),
    collector=NAME,
)
DUMP_SKIPPED = declare(
    "conntrack_dump_skipped_entries",
    "gauge",
    "Entries the last dump left unread at --collector.conntrack.max-entries (the table's count "
    "less those read); 0 when it read them all.",
    collector=NAME,
)
ATTRIBUTED = declare(
    "conntrack_attributed",
    "gauge",
    "1 when entries were attributed to containers (their addresses known from the Engine API); "
    "0: every entry is counted unattributed.",
    collector=NAME,
)
UNATTRIBUTED_ENTRIES = declare(
    "conntrack_unattributed_entries",
    "gauge",
    "Entries read that no container holds: owner host (one end is an address of the host) or "
    "unknown (neither end is a container's or the host's: another runtime's namespaces, a "
    "container gone).",
    ("owner",),
    collector=NAME,
)
CONTAINER_ENTRIES = declare(
    "container_conntrack_entries",
    "gauge",
    "Tracked connections whose original source is one of the container's addresses, or whose "
    "reply source is (the original destination after DNAT), by protocol (tcp, udp, icmp, "
    "other). An entry between two containers counts for both.",
    ("container", "protocol"),
    collector=NAME,
)
CONTAINER_TCP = declare(
    "container_conntrack_tcp_entries",
    "gauge",
    "The container's tracked TCP connections by state (established, time_wait, syn_sent, ...); "
    "only states it holds entries in.",
    ("container", "state"),
    collector=NAME,
)


def write(snapshot: Snapshot, out: Families) -> None:
    facts = snapshot.current(NAME, ConntrackFacts)
    if facts is None:
        return
    out.add(AVAILABLE, int(facts.table is not None))
    if facts.table is None:
        return
    table = facts.table
    out.add(ENTRIES, table.entries)
    out.add(LIMIT, table.limit)
    out.add(BUCKETS, table.buckets)
    for name, value in table.stats:
        out.add(STATS[name], value)
    for capability in facts.missing_capabilities:
        out.add(PRIVILEGE_MISSING, 1, NAME, capability)
    out.add(DUMP_SUCCESS, int(facts.dump is not None))
    dump = facts.dump
    if dump is None:
        return
    read = dict.fromkeys(dump.families, 0)
    for row in dump.rows:
        read[row.family] = read.get(row.family, 0) + row.entries
    for family, entries in sorted(read.items()):
        out.add(DUMP_ENTRIES, entries, family)
    out.add(DUMP_SKIPPED, dump.skipped)
    out.add(ATTRIBUTED, int(facts.containers is not None))
    keys, unattributed = _attributed(facts)
    for owner in UNATTRIBUTED:
        out.add(UNATTRIBUTED_ENTRIES, unattributed[owner], owner)
    # The dump is up to one conntrack interval (60 s) old: a container removed since then is
    # dropped at the next containers sample, not kept until the next dump.
    known = inventory(snapshot)
    if known is not None:
        listed = {c.name for c in known.engine.containers}
        keys = [key for key in keys if key[0] in listed]
    # A block per container: a container started or removed re-runs this writer (the list
    # above), and the others' lines are reused, not formatted again.
    out.blocks_of(keys, _container_series)


# A container's conntrack series: its name, entries by PROTOCOLS, TCP entries by state.
_ContainerKey = tuple[str, tuple[int, ...], tuple[tuple[str, int], ...]]


@last_answer
def _attributed(facts: ConntrackFacts) -> tuple[list[_ContainerKey], Counter[str]]:
    """attribute(facts) as the containers' block keys, by name: the dump changes once a
    conntrack interval, the container list with every container started or removed."""
    containers, unattributed = attribute(facts)
    keys = [
        (
            name,
            tuple(containers[name].by_protocol[protocol] for protocol in PROTOCOLS),
            tuple(sorted(containers[name].tcp_states.items())),
        )
        for name in sorted(containers)
    ]
    return keys, unattributed


def _container_series(key: _ContainerKey, out: Families) -> None:
    name, by_protocol, tcp_states = key
    for protocol, entries in zip(PROTOCOLS, by_protocol, strict=True):
        out.add(CONTAINER_ENTRIES, entries, name, protocol)
    for state, entries in tcp_states:
        out.add(CONTAINER_TCP, entries, name, state)
