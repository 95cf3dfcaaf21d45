"""The nat collector's metric families and writer."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable

from exporter.collectors.nat.facts import NAME, NatFacts
from exporter.collectors.nat.judge import (
    docker_firewall,
    judged_families,
    nat_destination,
    nat_verdicts,
    rules_split_across_backends,
)
from exporter.metrics import Families, declare
from exporter.readers.nat_rules import NatCounters, NatRule
from exporter.selfmetrics import PRIVILEGE_MISSING
from exporter.snapshot import Snapshot

BACKEND_INFO = declare(
    "nat_backend_info",
    "gauge",
    "The firewall backend Docker's rules are in, by the chains and tables it made: "
    "iptables-legacy, iptables-nft, nftables (Docker's own backend) or none; 1.",
    ("backend",),
    collector=NAME,
)
BACKEND_READABLE = declare(
    "nat_backend_readable",
    "gauge",
    "1 when the backend (legacy: ip_tables; nftables: nf_tables over netlink) could be read; "
    "0 means no verdict on missing rules (privilege_missing says which capability it lacks).",
    ("backend",),
    collector=NAME,
)
RULES = declare(
    "nat_rules",
    "gauge",
    "Rules in the backend's nat table, Docker's or not; family ipv4 (iptables) or ipv6 "
    "(ip6tables).",
    ("backend", "family"),
    collector=NAME,
)
SPLIT = declare(
    "nat_rules_split_across_backends",
    "gauge",
    "1 when both backends hold nat rules of one family: packets meet both rule sets, a known "
    "cause of broken container networking.",
    (),
    collector=NAME,
)
JUDGED = declare(
    "nat_judged",
    "gauge",
    "1 when missing MASQUERADE and DNAT rules of this family (ipv4, ipv6) are judged; 0 when "
    "not: a backend or the Engine API is unreadable, Docker manages no firewall, or, for ipv6, "
    "Docker manages no IPv6 NAT (no DOCKER chain in any ip6 nat table: --ip6tables off, or no "
    "IPv6 at all).",
    ("family",),
    collector=NAME,
)
MASQ_LABELS = ("backend", "family", "table", "chain", "source", "out_interface", "negated")
MASQ_RULES = declare(
    "nat_masquerade_rules",
    "gauge",
    "MASQUERADE rules with these properties (more than 1: duplicates). As in "
    "`-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE`.",
    MASQ_LABELS,
    collector=NAME,
)
MASQ_PACKETS = declare(
    "nat_masquerade_packets",
    "counter",
    "Packets the MASQUERADE rules have matched.",
    MASQ_LABELS,
    collector=NAME,
)
MASQ_BYTES = declare(
    "nat_masquerade_bytes",
    "counter",
    "Bytes the MASQUERADE rules have matched.",
    MASQ_LABELS,
    collector=NAME,
)
DNAT_LABELS = ("backend", "family", "table", "chain", "protocol", "host_port", "destination")
DNAT_RULES = declare(
    "nat_dnat_rules",
    "gauge",
    "DNAT rules with these properties, as Docker makes for a published port "
    "(destination is the container address:port, [address]:port for IPv6).",
    DNAT_LABELS,
    collector=NAME,
)
DNAT_PACKETS = declare(
    "nat_dnat_packets",
    "counter",
    "Packets the DNAT rules have matched.",
    DNAT_LABELS,
    collector=NAME,
)
DNAT_BYTES = declare(
    "nat_dnat_bytes", "counter", "Bytes the DNAT rules have matched.", DNAT_LABELS, collector=NAME
)
MASQ_MISSING = declare(
    "nat_masquerade_missing",
    "gauge",
    "1 when a bridge network with IP masquerade on and not internal lacks its MASQUERADE rule "
    "(source its subnet, leaving by anything but its bridge) in every backend, in this reading "
    "and one a moment before; family ipv6: an IPv6 subnet's rule in ip6tables. Absent when it "
    "cannot be judged (see docker_host_nat_judged).",
    ("network", "subnet", "bridge", "family"),
    collector=NAME,
)
DNAT_MISSING = declare(
    "nat_dnat_missing",
    "gauge",
    "1 when a running container's published port lacks its DNAT rule (host port to the "
    "container's address and port), in this reading and one a moment before; family ipv6: an "
    "IPv6 binding's rule in ip6tables, to the container's IPv6 address.",
    ("container", "protocol", "host_port", "container_port", "family"),
    collector=NAME,
)


def _fold(rules: Iterable[NatRule], key: tuple[str, ...]) -> dict[tuple[str, ...], int]:
    """Rules with equal labels folded into one series: how many."""
    return Counter(_labels(rule, key) for rule in rules)


def _labels(rule: NatRule, key: tuple[str, ...]) -> tuple[str, ...]:
    values = {
        "backend": rule.backend,
        "family": rule.family,
        "table": rule.table,
        "chain": rule.chain,
        "source": rule.source or "",
        "out_interface": rule.out_interface or "",
        "negated": "true" if rule.out_negated else "false",
        "protocol": rule.protocol or "",
        "host_port": str(rule.dport or ""),
        "destination": nat_destination(rule),
    }
    return tuple(values[k] for k in key)


def write(snapshot: Snapshot, out: Families) -> None:
    nat = snapshot.current(NAME, NatFacts)
    if nat is None:
        return
    for backend in docker_firewall(nat.backends):
        out.add(BACKEND_INFO, 1, backend)
    for b in nat.backends:
        out.add(BACKEND_READABLE, int(b.readable), b.name)
        if b.readable:
            out.add(RULES, b.nat_rules, b.name, "ipv4")
            out.add(RULES, b.nat_rules_ipv6, b.name, "ipv6")
    for capability in sorted({c for b in nat.backends for c in b.missing_capabilities}):
        out.add(PRIVILEGE_MISSING, 1, NAME, capability)
    out.add(SPLIT, int(rules_split_across_backends(nat.backends)))
    for family, judged in judged_families(nat).items():
        out.add(JUDGED, int(judged), family)

    masquerades = [r for r in nat.rules if r.action == "masquerade"]
    for labels, count in _fold(masquerades, MASQ_LABELS).items():
        out.add(MASQ_RULES, count, *labels)
    dnats = [r for r in nat.rules if r.action == "dnat"]
    for labels, count in _fold(dnats, DNAT_LABELS).items():
        out.add(DNAT_RULES, count, *labels)

    masquerade_verdicts, dnat_verdicts = nat_verdicts(nat)
    for m, missing in masquerade_verdicts:
        out.add(MASQ_MISSING, int(missing), m.network, m.subnet, m.bridge, m.family)
    for d, missing in dnat_verdicts:
        out.add(
            DNAT_MISSING,
            int(missing),
            d.container,
            d.protocol,
            str(d.host_port),
            str(d.container_port),
            d.family,
        )


def write_counters(snapshot: Snapshot, out: Families) -> None:
    """What the MASQUERADE and DNAT rules matched: the families traffic moves, re-run when the
    counters moved while `write` (and every verdict) waits for the rules to change."""
    nat = snapshot.current(NAME, NatFacts)
    counters = snapshot.counters(NAME, NatCounters)
    if nat is None or counters is None or len(counters.packets) != len(nat.rules):
        return  # counters of another reading than these rules': none rather than wrong ones
    folded: dict[tuple[str, ...], list[int]] = {}
    series = _counted_series(nat.rules)
    for labels, packets, byte_count in zip(series, counters.packets, counters.bytes, strict=True):
        if labels is None:
            continue
        if (sums := folded.get(labels)) is None:
            folded[labels] = [packets, byte_count]
        else:
            sums[0] += packets
            sums[1] += byte_count
    for action, packets_family, bytes_family in _COUNTER_FAMILIES:  # in a fixed order
        for labels, (packets, byte_count) in folded.items():
            if labels[0] == action:
                out.add(packets_family, packets, *labels[1:])
                out.add(bytes_family, byte_count, *labels[1:])


_COUNTER_FAMILIES = (("masquerade", MASQ_PACKETS, MASQ_BYTES), ("dnat", DNAT_PACKETS, DNAT_BYTES))


@functools.lru_cache(maxsize=4)
def _counted_series(rules: tuple[NatRule, ...]) -> tuple[tuple[str, ...] | None, ...]:
    """Each rule's counter series, (action, *labels); None for none. Worked out once per rule
    set: the counters move every run, the rules seldom (the very same tuple then)."""
    keys = {"masquerade": MASQ_LABELS, "dnat": DNAT_LABELS}
    return tuple(
        (rule.action, *_labels(rule, keys[rule.action])) if rule.action in keys else None
        for rule in rules
    )
