"""What the firewall collector observed: the filter chains and rules the forward hook reaches in
both backends (the tick's reading of the firewall, shared with nat), the kernel's forwarding
switches, whether dockerd manages the firewall, and what Docker's networks and published ports
need (from the Engine API). Facts only: the verdicts are the judge's, worked out by whoever
reads these."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.collectors.nat.facts import NatExpectations
from exporter.readers.filter_rules import FilterChain, FilterRule
from exporter.readers.netfilter_base import FirewallBackend

NAME = "firewall"  # the collector's name: --collector.firewall, its series' collector label


@dataclass(frozen=True)
class ForwardingSwitches:
    """The kernel's switches that decide whether a bridge's traffic is forwarded and filtered,
    from /proc/sys. None: unreadable; bridge_nf_* None: br_netfilter is not loaded (no
    /proc/sys/net/bridge), so bridged traffic does not pass iptables at all."""

    ipv4_forward: int | None  # net.ipv4.ip_forward
    ipv6_forwarding: int | None  # net.ipv6.conf.all.forwarding
    bridge_nf_call_iptables: int | None
    bridge_nf_call_ip6tables: int | None


@dataclass(frozen=True)
class FirewallFacts:
    # Both backends of the reading: which could be read, which chains Docker made (its layout
    # and whether it manages IPv6 NAT are told by them).
    backends: tuple[FirewallBackend, ...]
    expectations: NatExpectations | None  # None when the Engine API could not be read
    # Filter-type chains (iptables' filter table, nft filter chains) and the rules of those the
    # forward hook reaches, both backends.
    filter_chains: tuple[FilterChain, ...] = ()
    filter_rules: tuple[FilterRule, ...] = ()
    forwarding: ForwardingSwitches | None = None
    # Whether the dockerd serving --docker.host manages iptables (None: unknown), and what
    # says so: "flag" (--iptables), "daemon.json", "default".
    docker_iptables: bool | None = None
    docker_iptables_from: str = ""
    # Keys of what looked missing or blocked in a first reading a moment before this one.
    earlier_missing: tuple[str, ...] = ()
