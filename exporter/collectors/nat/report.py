"""The nat collector's `inspect` sections: the rules as `iptables -t nat -S` prints them, and
the ones Docker needs but lacks."""

from __future__ import annotations

from exporter.collectors.nat.facts import NAME, NatFacts
from exporter.collectors.nat.judge import (
    docker_firewall,
    judged_families,
    nat_destination,
    nat_verdicts,
    rules_split_across_backends,
)
from exporter.readers.nat_rules import NatCounters, NatRule
from exporter.report import table
from exporter.snapshot import Snapshot


def sections(snapshot: Snapshot) -> list[str]:
    nat = snapshot.current(NAME, NatFacts)
    return nat_sections(nat, snapshot.counters(NAME, NatCounters)) if nat is not None else []


def nat_sections(nat: NatFacts, counters: NatCounters | None = None) -> list[str]:
    """counters: the rules' (of the same reading), or None: shown as "-"."""
    backends = ", ".join(
        f"{b.name}: {b.nat_rules} nat rules, {b.nat_rules_ipv6} IPv6"
        if b.readable
        else f"{b.name}: UNREADABLE ({b.error})"
        for b in nat.backends
    )
    header = f"NAT (Docker's firewall: {', '.join(docker_firewall(nat.backends))}; {backends})" + (
        "\nWARNING: nat rules are split across both backends"
        if rules_split_across_backends(nat.backends)
        else ""
    )
    counted: list[tuple[int | str, int | str]] = (
        list(zip(counters.packets, counters.bytes, strict=True))
        if counters is not None and len(counters.packets) == len(nat.rules)
        else [("-", "-")] * len(nat.rules)
    )
    rules = table(
        header,
        ("BACKEND", "CHAIN", "RULE", "PACKETS", "BYTES"),
        (
            (
                r.backend + (" (ipv6)" if r.family == "ipv6" else ""),
                f"{r.table}/{r.chain}",
                iptables_text(r),
                packets,
                byte_count,
            )
            for r, (packets, byte_count) in zip(nat.rules, counted, strict=True)
        ),
    )
    masquerades, dnats = nat_verdicts(nat)
    tool = {"ipv4": "iptables", "ipv6": "ip6tables"}
    missing = [
        f"{tool[m.family]} -s {m.subnet} ! -o {m.bridge} -j MASQUERADE  (network {m.network})"
        for m, gone in masquerades
        if gone
    ]
    missing += [
        f"{tool[d.family]} -p {d.protocol} --dport {d.host_port} -j DNAT --to-destination "
        + (
            f"[{'|'.join(d.addresses)}]:{d.container_port}"
            if d.family == "ipv6"
            else f"{'|'.join(d.addresses)}:{d.container_port}"
        )
        + f"  (container {d.container})"
        for d, gone in dnats
        if gone
    ]
    judged = bool(masquerades or dnats) or nat.expectations is not None
    if judged and not judged_families(nat)["ipv6"]:
        missing.append("(IPv6 not judged: Docker manages no IPv6 NAT here)")
    verdict = (
        "MISSING NAT RULES\n"
        + "\n".join(missing or ["(none)" if judged else "(not judged)"])
        + "\n"
    )
    return [rules, verdict]


def iptables_text(rule: NatRule) -> str:
    """A decoded rule, as `iptables -t nat -S` would print it."""
    parts = []
    if rule.source:
        parts.append(f"-s {rule.source}")
    if rule.destination:
        parts.append(f"-d {rule.destination}")
    if rule.in_interface:
        parts.append(f"{'! ' if rule.in_negated else ''}-i {rule.in_interface}")
    if rule.out_interface:
        parts.append(f"{'! ' if rule.out_negated else ''}-o {rule.out_interface}")
    if rule.protocol:
        parts.append(f"-p {rule.protocol}")
    if rule.dport:
        parts.append(f"--dport {rule.dport}")
    if rule.action == "masquerade":
        parts.append("-j MASQUERADE")
    else:
        parts.append(f"-j DNAT --to-destination {nat_destination(rule)}")
    return " ".join(parts)
