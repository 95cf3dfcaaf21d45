"""The firewall collector's metric families and writer."""

from __future__ import annotations

from collections import Counter

from exporter.collectors.firewall.facts import NAME, FirewallFacts
from exporter.collectors.firewall.judge import (
    docker_manages_firewall,
    docker_user_rules,
    filter_judged,
    filter_verdicts,
    forward_policies,
    undecoded_filter_rules,
)
from exporter.collectors.nat.judge import IPV4, IPV6
from exporter.metrics import Families, declare
from exporter.selfmetrics import PRIVILEGE_MISSING
from exporter.snapshot import Snapshot

FIREWALL_MANAGED = declare(
    "docker_firewall_managed",
    "gauge",
    '1 when dockerd manages the firewall; 0 with --iptables=false (or "iptables": false in '
    "daemon.json): then no filter or NAT rule is judged. said_by: flag, daemon.json, default "
    "(dockerd's setting), or chains (its setting unreadable: whether any chain of its exists).",
    ("said_by",),
    collector=NAME,
)
FILTER_JUDGED = declare(
    "filter_judged",
    "gauge",
    "1 when Docker's filter rules of this family are judged (every backend read, the Engine "
    "API's view, Docker managing the firewall; ipv6 where Docker manages ip6tables).",
    ("family",),
    collector=NAME,
)
FILTER_MISSING = declare(
    "filter_rule_missing",
    "gauge",
    "1 when a filter rule Docker's networks or published ports need is missing, in this reading "
    "and one a moment before: rule jump_docker_user, jump_isolation, jump_docker_forward, "
    'jump_docker_ct, jump_docker_bridge, forward_chain (network "": once per host), '
    "established, jump_docker, outgoing, isolation, isolation_drop, jump_outgoing (per "
    "network), "
    "port_accept:<protocol>/<container port> (per container). Absent when not judged.",
    ("family", "network", "container", "rule"),
    collector=NAME,
)
FILTER_RULES = declare(
    "filter_rules",
    "gauge",
    "Rules in the filter chains the forward hook reaches (iptables' filter table: FORWARD and "
    "every user chain), Docker's or not.",
    ("backend", "family", "table"),
    collector=NAME,
)
UNDECODED = declare(
    "firewall_rules_undecoded",
    "gauge",
    "Rules on the forward path the decoder does not understand (a match or target it does not "
    "read); a verdict such a rule could change is unknown, never ok.",
    ("backend", "family", "table"),
    collector=NAME,
)
FORWARD_POLICY = declare(
    "filter_forward_policy",
    "gauge",
    "1 for the policy (accept, drop) of each forward-hook base chain: iptables' FORWARD in "
    "either backend, nft's own (Docker 29's filter-FORWARD).",
    ("backend", "family", "table", "chain", "policy"),
    collector=NAME,
)
DOCKER_USER_RULES = declare(
    "filter_docker_user_rules",
    "gauge",
    "Rules in DOCKER-USER (the user's own policy, shown and not judged; the unconditional "
    "RETURN Docker adds is not counted).",
    ("backend", "family"),
    collector=NAME,
)
IP_FORWARD = declare(
    "ip_forward",
    "gauge",
    "net.ipv4.ip_forward (family ipv4) and net.ipv6.conf.all.forwarding (ipv6), of the "
    "exporter's network namespace (the host's with --net=host): 0 and no published port or "
    "outgoing container traffic is forwarded. Absent when unreadable.",
    ("family",),
    collector=NAME,
)
BR_NETFILTER = declare(
    "br_netfilter_loaded",
    "gauge",
    "1 when br_netfilter is loaded (/proc/sys/net/bridge exists): only then does traffic "
    "between containers on one bridge pass iptables.",
    (),
    collector=NAME,
)
BRIDGE_NF_CALL = declare(
    "bridge_nf_call",
    "gauge",
    "net.bridge.bridge-nf-call-iptables (family ipv4) and -ip6tables (ipv6): 1 when bridged "
    "traffic passes iptables. Absent without br_netfilter.",
    ("family",),
    collector=NAME,
)


def write(snapshot: Snapshot, out: Families) -> None:
    """What is judged, what is missing, the policies and switches."""
    fw = snapshot.current(NAME, FirewallFacts)
    if fw is None:
        return
    for capability in sorted({c for b in fw.backends for c in b.missing_capabilities}):
        out.add(PRIVILEGE_MISSING, 1, NAME, capability)
    said_by = fw.docker_iptables_from or "chains"
    out.add(FIREWALL_MANAGED, int(docker_manages_firewall(fw)), said_by)
    judged = filter_judged(fw)
    for family in (IPV4, IPV6):
        out.add(FILTER_JUDGED, int(judged[family]), family)
    for e, missing in filter_verdicts(fw):
        out.add(FILTER_MISSING, int(missing), e.family, e.network, e.container, e.rule)
    counts: Counter[tuple[str, str, str]] = Counter(
        (r.backend, r.family, r.table) for r in fw.filter_rules
    )
    for c in fw.filter_chains:
        counts[(c.backend, c.family, c.table)] += 0
    undecoded = undecoded_filter_rules(fw)
    for key, count in sorted(counts.items()):
        out.add(FILTER_RULES, count, *key)
        out.add(UNDECODED, undecoded.get(key, 0), *key)
    for backend, family, table, chain, policy in forward_policies(fw):
        out.add(FORWARD_POLICY, 1, backend, family, table, chain, policy)
    for (backend, family), count in sorted(docker_user_rules(fw).items()):
        out.add(DOCKER_USER_RULES, count, backend, family)
    _write_switches(fw, out)


def _write_switches(fw: FirewallFacts, out: Families) -> None:
    switches = fw.forwarding
    if switches is None:
        return
    for family, value in ((IPV4, switches.ipv4_forward), (IPV6, switches.ipv6_forwarding)):
        if value is not None:
            out.add(IP_FORWARD, int(value != 0), family)
    bridge = (switches.bridge_nf_call_iptables, switches.bridge_nf_call_ip6tables)
    out.add(BR_NETFILTER, int(any(v is not None for v in bridge)))
    for family, value in zip((IPV4, IPV6), bridge, strict=True):
        if value is not None:
            out.add(BRIDGE_NF_CALL, int(value != 0), family)
