"""The firewall collector's `inspect` sections: what Docker's filter rules lack, the forwarding
switches, and each published port's forward verdict."""

from __future__ import annotations

from exporter.collectors.firewall.facts import NAME, FirewallFacts
from exporter.collectors.firewall.judge import (
    docker_manages_firewall,
    docker_user_rules,
    filter_index,
    filter_judged,
    filter_layout,
    filter_verdicts,
    forward_policies,
    forward_verdict,
    published_ports,
    rule_text,
    undecoded_filter_rules,
)
from exporter.collectors.nat.judge import IPV4, IPV6
from exporter.report import table
from exporter.snapshot import Snapshot


def sections(snapshot: Snapshot) -> list[str]:
    fw = snapshot.current(NAME, FirewallFacts)
    return filter_sections(fw) if fw is not None else []


def _switch(value: int | None, absent: str = "unreadable") -> str:
    return absent if value is None else ("on" if value else "OFF")


def _managed(fw: FirewallFacts) -> str:
    said_by = {
        "flag": "its --iptables flag",
        "daemon.json": 'daemon.json\'s "iptables"',
        "default": "default",
    }.get(fw.docker_iptables_from, "its chains; its setting unreadable")
    if docker_manages_firewall(fw):
        return f"Docker manages the firewall ({said_by})"
    return f"Docker manages NO firewall ({said_by}): nothing judged"


def filter_sections(fw: FirewallFacts) -> list[str]:
    """FORWARD's policies, the forwarding switches, Docker's filter rules that are missing,
    and each published port's forward verdict."""
    switches = fw.forwarding
    lines = [f"FILTER ({_managed(fw)})"]
    if switches is not None:
        bridge = (
            "br_netfilter not loaded: bridged traffic bypasses iptables"
            if switches.bridge_nf_call_iptables is None
            and switches.bridge_nf_call_ip6tables is None
            else f"bridge-nf-call-iptables {_switch(switches.bridge_nf_call_iptables)}, "
            f"bridge-nf-call-ip6tables {_switch(switches.bridge_nf_call_ip6tables)}"
        )
        lines.append(
            f"net.ipv4.ip_forward {_switch(switches.ipv4_forward)}, "
            f"net.ipv6.conf.all.forwarding {_switch(switches.ipv6_forwarding)}; {bridge}"
        )
    judged = filter_judged(fw)
    ix = filter_index(fw)
    for family in (IPV4, IPV6):
        layout = filter_layout(fw, family) if judged[family] else "not judged"
        lines.append(f"{family}: Docker's layout {layout}")
    lines += [
        f"{backend} {family} {table}/{chain} policy {policy.upper()}"
        for backend, family, table, chain, policy in forward_policies(fw)
    ]
    lines += [
        f"DOCKER-USER ({backend} {family}): {count} rules of the user's own (not judged)"
        for (backend, family), count in sorted(docker_user_rules(fw).items())
    ]
    lines += [
        f"UNDECODED: {count} rules in {backend} {family} {table} (verdicts they touch are unknown)"
        for (backend, family, table), count in sorted(undecoded_filter_rules(fw).items())
    ]
    undecoded = table(
        "UNDECODED FILTER RULES",
        ("BACKEND", "CHAIN", "RULE", "NOT UNDERSTOOD"),
        (
            (
                f"{r.backend} {r.family}",
                f"{r.table}/{r.chain} {r.position}",
                rule_text(r),
                r.undecoded,
            )
            for r in fw.filter_rules
            if r.undecoded
        ),
    )
    missing = [
        f"{e.text}  ({f'network {e.network}' if e.network else 'every network'}"
        + (f", container {e.container}" if e.container else "")
        + ")"
        for e, gone in filter_verdicts(fw, ix)
        if gone
    ]
    verdict = (
        "MISSING FILTER RULES\n"
        + "\n".join(missing or ["(none)" if any(judged.values()) else "(not judged)"])
        + "\n"
    )
    ports = table(
        "FORWARD VERDICT PER PUBLISHED PORT",
        ("CONTAINER", "TO", "VERDICT", "REASON"),
        (
            (p.container, f"{p.address} {p.protocol}/{p.container_port}", v.state.upper(), v.reason)
            for family in (IPV4, IPV6)
            if judged[family] and fw.expectations is not None
            for p in published_ports(fw.expectations, family, judged[IPV6])
            for v in (
                forward_verdict(ix, family, p.address, p.container_port, p.protocol, p.bridge),
            )
        ),
    )
    return ["\n".join(lines) + "\n", verdict, ports, undecoded]
