"""The nat collector's `inspect` sections: the rules as `iptables -t nat -S` prints them, and
the ones Docker needs but lacks."""

from __future__ import annotations

from exporter.collectors.nat.facts import NAME, NatFacts
from exporter.collectors.nat.judge import (
    IPV4,
    IPV6,
    docker_firewall,
    docker_manages_firewall,
    docker_user_rules,
    filter_judged,
    filter_layout,
    filter_verdicts,
    forward_policies,
    forward_verdict,
    judged_families,
    nat_destination,
    nat_verdicts,
    published_ports,
    rule_text,
    rules_split_across_backends,
    undecoded_filter_rules,
)
from exporter.readers.netfilter import NatRule
from exporter.report import table
from exporter.snapshot import Snapshot


def sections(snapshot: Snapshot) -> list[str]:
    nat = snapshot.current(NAME, NatFacts)
    return [*nat_sections(nat), *filter_sections(nat)] if nat is not None else []


def _switch(value: int | None, absent: str = "unreadable") -> str:
    return absent if value is None else ("on" if value else "OFF")


def _managed(nat: NatFacts) -> str:
    said_by = {
        "flag": "its --iptables flag",
        "daemon.json": 'daemon.json\'s "iptables"',
        "default": "default",
    }.get(nat.docker_iptables_from, "its chains; its setting unreadable")
    if docker_manages_firewall(nat):
        return f"Docker manages the firewall ({said_by})"
    return f"Docker manages NO firewall ({said_by}): nothing judged"


def filter_sections(nat: NatFacts) -> list[str]:
    """FORWARD's policies, the forwarding switches, Docker's filter rules that are missing,
    and each published port's forward verdict."""
    switches = nat.forwarding
    lines = [f"FILTER ({_managed(nat)})"]
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
    judged = filter_judged(nat)
    for family in (IPV4, IPV6):
        layout = filter_layout(nat, family) if judged[family] else "not judged"
        lines.append(f"{family}: Docker's layout {layout}")
    lines += [
        f"{backend} {family} {table}/{chain} policy {policy.upper()}"
        for backend, family, table, chain, policy in forward_policies(nat)
    ]
    lines += [
        f"DOCKER-USER ({backend} {family}): {count} rules of the user's own (not judged)"
        for (backend, family), count in sorted(docker_user_rules(nat).items())
    ]
    lines += [
        f"UNDECODED: {count} rules in {backend} {family} {table} (verdicts they touch are unknown)"
        for (backend, family, table), count in sorted(undecoded_filter_rules(nat).items())
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
            for r in nat.filter_rules
            if r.undecoded
        ),
    )
    missing = [
        f"{e.text}  ({f'network {e.network}' if e.network else 'every network'}"
        + (f", container {e.container}" if e.container else "")
        + ")"
        for e, gone in filter_verdicts(nat)
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
            if judged[family] and nat.expectations is not None
            for p in published_ports(nat.expectations, family, judged[IPV6])
            for v in (
                forward_verdict(nat, family, p.address, p.container_port, p.protocol, p.bridge),
            )
        ),
    )
    return ["\n".join(lines) + "\n", verdict, ports, undecoded]


def nat_sections(nat: NatFacts) -> list[str]:
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
    rules = table(
        header,
        ("BACKEND", "CHAIN", "RULE", "PACKETS", "BYTES"),
        (
            (
                r.backend + (" (ipv6)" if r.family == "ipv6" else ""),
                f"{r.table}/{r.chain}",
                iptables_text(r),
                r.packets,
                r.bytes,
            )
            for r in nat.rules
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
