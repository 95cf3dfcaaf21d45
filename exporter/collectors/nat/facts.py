"""What the nat collector observed: both firewall backends' nat rules and the filter rules the
forward hook reaches, the kernel's forwarding switches, and what Docker's networks and
published ports need (from the Engine API)."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.readers.docker_api import ContainerRecord, DockerNetwork
from exporter.readers.netfilter import FilterChain, FilterRule, FirewallBackend, NatRule

NAME = "nat"  # the collector's name: --collector.nat, its series' collector label


@dataclass(frozen=True)
class NatExpectations:
    """What Docker's networks and published ports need, from the Engine API."""

    networks: tuple[DockerNetwork, ...]
    containers: tuple[ContainerRecord, ...]
    # The Engine's version ("20.10.24", "28.1.0"): which filter layout Docker writes when
    # none of its filter chains is left to show it.
    engine_version: str = ""


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
class NatFacts:
    backends: tuple[FirewallBackend, ...]
    rules: tuple[NatRule, ...]
    expectations: NatExpectations | None  # None when the Engine API could not be read
    # Keys of the expectations that looked unmet in a first reading a moment before this one.
    earlier_missing: tuple[str, ...] = ()
    # Filter-type chains (iptables' filter table, nft filter chains) and the rules of those the
    # forward hook reaches, from the same reading as the nat rules, both backends.
    filter_chains: tuple[FilterChain, ...] = ()
    filter_rules: tuple[FilterRule, ...] = ()
    forwarding: ForwardingSwitches | None = None
    # Whether the dockerd serving --docker.host manages iptables (None: unknown), and what
    # says so: "flag" (--iptables), "daemon.json", "default".
    docker_iptables: bool | None = None
    docker_iptables_from: str = ""
    # (judge.forward_key, state, reason) of forward_verdict for each published port's target,
    # worked out once by the source for this reading: the port verdicts read it, not redo it.
    forward_paths: tuple[tuple[str, str, str], ...] = ()
