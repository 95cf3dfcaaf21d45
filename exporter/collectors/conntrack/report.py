"""The conntrack collector's `inspect` section: the table's use against its limit, and the
containers holding the most entries."""

from __future__ import annotations

from exporter.collectors.conntrack.facts import NAME, ConntrackFacts
from exporter.collectors.conntrack.judge import PROTOCOLS, attribute, top_containers, usage_ratio
from exporter.report import table
from exporter.snapshot import Snapshot

TOP = 10


def sections(snapshot: Snapshot) -> list[str]:
    facts = snapshot.current(NAME, ConntrackFacts)
    return conntrack_sections(facts) if facts is not None else []


def conntrack_sections(facts: ConntrackFacts) -> list[str]:
    if facts.table is None:
        return ["CONNTRACK\n(the kernel tracks no connections here: nf_conntrack is not loaded)\n"]
    t = facts.table
    ratio = usage_ratio(t)
    stats = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in t.stats)
    lines = [
        f"CONNTRACK: {t.entries} of {t.limit} entries"
        + (f" ({ratio:.1%})" if ratio is not None else "")
        + f", {t.buckets} buckets; {stats}"
    ]
    dump = facts.dump
    if dump is None:
        lines.append(f"dump: NOT READ ({facts.dump_error or 'unknown reason'})")
        return ["\n".join(lines) + "\n"]
    _, unattributed = attribute(facts)
    lines.append(
        f"dump ({', '.join(dump.families)}): {dump.read} read"
        + (f", {dump.skipped} SKIPPED at the cap" if dump.skipped else "")
        + f"; not a container's: {unattributed['host']} the host's, "
        f"{unattributed['unknown']} unknown"
        + ("" if facts.containers is not None else " (Engine API unreadable: none attributed)")
    )
    top = top_containers(facts, TOP)
    rows = (
        (
            c.name,
            c.total,
            *(c.by_protocol[p] for p in PROTOCOLS),
            " ".join(f"{s}={n}" for s, n in c.tcp_states.most_common()),
        )
        for c in top
        if c.total > 0
    )
    header = ("CONTAINER", "ENTRIES", *(p.upper() for p in PROTOCOLS), "TCP STATES")
    return ["\n".join(lines) + "\n", table(f"CONNTRACK: TOP {TOP} CONTAINERS", header, rows)]
