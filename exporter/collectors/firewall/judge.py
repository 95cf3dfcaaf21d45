"""The firewall collector's verdicts: Docker's filter rules held against what its networks and
published ports need (in the layout its engine writes), and one published port's first packet
walked through the forward hook's chains of both backends. Pure: no state between calls; an
index of one reading's rules (filter_index) is built by whoever judges and passed along."""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import lru_cache

from exporter.collectors.firewall.facts import FirewallFacts
from exporter.collectors.nat.facts import NatExpectations
from exporter.collectors.nat.judge import (
    IPV4,
    IPV6,
    docker_firewall,
    docker_manages_ipv6_nat,
    expected_dnats,
    nat_judged,
)
from exporter.readers.docker_api import DockerNetwork
from exporter.readers.filter_rules import FilterChain, FilterRule
from exporter.readers.netfilter_base import DOCKER_CHAIN_PREFIX, DOCKER_NFT_TABLES

# -- the filter rules on the forward path ---------------------------------------------------
#
# Which of Docker's filter rules a network or a published port needs depends on the layout its
# engine writes, told by the chains that exist:
# - "iptables" (Docker up to 27): FORWARD jumps to DOCKER-USER and DOCKER-ISOLATION-STAGE-1,
#   and per bridge: `-o br -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
#   `-o br -j DOCKER`, `-i br ! -o br -j ACCEPT`; STAGE-1 `-i br ! -o br -j STAGE-2`.
# - "iptables-forward" (Docker 28+, a DOCKER-FORWARD chain): FORWARD jumps to DOCKER-USER and
#   DOCKER-FORWARD, which jumps to DOCKER-CT (`-o br ... --ctstate RELATED,ESTABLISHED -j
#   ACCEPT`) and DOCKER-BRIDGE (`-o br -j DOCKER`) and holds `-i br -j ACCEPT`.
# - "nftables" (Docker 29's own backend, table docker-bridges): filter-FORWARD's
#   `oifname vmap` jumps to filter-forward-in__br (ct state established,related accept; the
#   published ports' accepts) and `iifname vmap` to filter-forward-out__br (accept).
# In every iptables layout each published port has, in DOCKER,
# `-d <container address> ! -i br -o br -p tcp --dport <port> -j ACCEPT`.

NFTABLES_LAYOUT, FORWARD_LAYOUT, CLASSIC_LAYOUT = "nftables", "iptables-forward", "iptables"
# Docker 28.0.0 alone: FORWARD's established and jump-to-DOCKER rules match the destination
# against an ipset of Docker's bridges' subnets, once for all of them (no DOCKER-FORWARD).
IPSET_LAYOUT = "iptables-ipset"
DOCKER_BRIDGE_SETS = {IPV4: "docker-ext-bridges-v4", IPV6: "docker-ext-bridges-v6"}
DOCKER_NFT_FORWARD = "filter-FORWARD"


@dataclass(frozen=True)
class Cut:
    """A rule that drops a published port's new connections from some sources only."""

    rule: str  # where: "<backend> <table>/<chain> rule <n>"
    text: str  # the rule, as iptables -S prints it
    sources: str  # which: "from 10.0.0.9/32", "not from 10.0.0.0/8, in by eth0", ...


@dataclass(frozen=True)
class FilterVerdict:
    """Whether a published port's first packet passes the forward hook's filter chains."""

    state: str  # "ok", "restricted", "broken", "unknown"
    reason: str
    # restricted: the rules before the port's ACCEPT that drop some sources' connections
    cuts: tuple[Cut, ...] = ()


@dataclass(frozen=True)
class ExpectedFilterRule:
    """One of Docker's filter rules a network (container "") or a published port needs."""

    family: str
    network: str
    container: str
    rule: str  # jump_docker_user, jump_isolation, established, jump_docker, outgoing, ...
    layout: str
    text: str  # the rule as its tool would print it, for inspect
    port: PublishedTarget | None = None  # a published port's ACCEPT: to where

    @property
    def key(self) -> str:
        return f"filter/{self.family}/{self.network}/{self.container}/{self.rule}"


def _chains_of(fw: FirewallFacts, family: str) -> list[FilterChain]:
    return [c for c in fw.filter_chains if c.family == family]


def filter_layout(fw: FirewallFacts, family: str) -> str:
    """The layout Docker's filter rules of this family follow, by the chains that exist, or, with
    none left (a firewall reload flushed them), by the fw side and the engine's version."""
    names = {(c.table, c.name) for c in _chains_of(fw, family)}
    if any(t in DOCKER_NFT_TABLES for t, _ in names) or (
        "nftables" in docker_firewall(fw.backends)
    ):
        return NFTABLES_LAYOUT
    if any(n == "DOCKER-FORWARD" for _, n in names):
        return FORWARD_LAYOUT
    if any(
        r.family == family and r.chain == "FORWARD" and r.match_set == DOCKER_BRIDGE_SETS[family]
        for r in fw.filter_rules
    ):
        return IPSET_LAYOUT
    if any(n == "DOCKER" for _, n in names):
        return CLASSIC_LAYOUT
    version = fw.expectations.engine_version if fw.expectations else ""
    if version == "28.0.0":
        return IPSET_LAYOUT
    return FORWARD_LAYOUT if (_engine_major(fw) or 0) >= 28 else CLASSIC_LAYOUT


def docker_filter_chains(fw: FirewallFacts, family: str) -> tuple[str, ...]:
    """ "table/chain" of the filter chains Docker made for this family."""
    return tuple(
        sorted(
            f"{c.table}/{c.name}"
            for c in _chains_of(fw, family)
            if c.name.startswith(DOCKER_CHAIN_PREFIX) or c.table in DOCKER_NFT_TABLES
        )
    )


def docker_manages_firewall(fw: FirewallFacts) -> bool:
    """dockerd's own setting (--iptables, daemon.json) where it could be read; else whether any
    of its chains or tables exist."""
    if fw.docker_iptables is not None:
        return fw.docker_iptables
    return docker_firewall(fw.backends) != ("none",) or bool(
        docker_filter_chains(fw, IPV4) or docker_filter_chains(fw, IPV6)
    )


def filter_judged(fw: FirewallFacts) -> dict[str, bool]:
    """Missing filter rules are judged with every backend read, the Engine API's view, and
    Docker managing a firewall (by its setting: a firewall reload that left it no chain is
    judged); IPv6 when Docker manages IPv6 NAT or made IPv6 filter chains."""
    ipv4 = (
        fw.expectations is not None
        and all(b.readable for b in fw.backends)
        and docker_manages_firewall(fw)
    )
    ipv6 = ipv4 and (docker_manages_ipv6_nat(fw.backends) or bool(docker_filter_chains(fw, IPV6)))
    return {IPV4: ipv4, IPV6: ipv6}


def _network_of(address: str, networks: Iterable[DockerNetwork]) -> DockerNetwork | None:
    ip = _address(address)
    if ip is None:
        return None
    for n in networks:
        for subnet in n.subnets:
            network = _network(subnet)
            if network is not None and network.version == ip.version and ip in network:
                return n
    return None


def _filtered_bridges(expect: NatExpectations) -> tuple[DockerNetwork, ...]:
    # Internal networks get isolation rules only: no way out, nothing published.
    return tuple(n for n in expect.networks if n.driver == "bridge" and n.bridge and not n.internal)


def _tool(family: str) -> str:
    return "ip6tables" if family == IPV6 else "iptables"


def _engine_major(fw: FirewallFacts) -> int | None:
    version = fw.expectations.engine_version if fw.expectations else ""
    major = version.split(".", 1)[0]
    return int(major) if major.isdigit() else None


def _global_rules(layout: str, family: str, user_chain: bool) -> list[tuple[str, str]]:
    """(rule, text) of the jumps every Docker host of this layout needs once. user_chain:
    whether Docker makes DOCKER-USER in this family (ip6tables only since Docker 23)."""
    tool = _tool(family)
    if layout == NFTABLES_LAYOUT:
        return [("forward_chain", f"table {family_table(family)} docker-bridges filter-FORWARD")]
    found = [("jump_docker_user", f"{tool} -A FORWARD -j DOCKER-USER")] if user_chain else []
    if layout == FORWARD_LAYOUT:
        return [
            *found,
            ("jump_docker_forward", f"{tool} -A FORWARD -j DOCKER-FORWARD"),
            ("jump_docker_ct", f"{tool} -A DOCKER-FORWARD -j DOCKER-CT"),
            ("jump_docker_bridge", f"{tool} -A DOCKER-FORWARD -j DOCKER-BRIDGE"),
        ]
    return [*found, ("jump_isolation", f"{tool} -A FORWARD -j DOCKER-ISOLATION-STAGE-1")]


def _network_rules(layout: str, family: str, br: str, isolation: bool) -> list[tuple[str, str]]:
    """(rule, text) of what one bridge network needs."""
    if layout == IPSET_LAYOUT:
        # Its established and jump rules are one rule each for every network, through the set.
        match = f"-m set --match-set {DOCKER_BRIDGE_SETS[family]} dst"
        ct = "-m conntrack --ctstate RELATED,ESTABLISHED"
        tool = _tool(family)
        return [
            ("established", f"{tool} -A FORWARD {match} {ct} -j ACCEPT"),
            ("jump_docker", f"{tool} -A FORWARD {match} -j DOCKER"),
            ("outgoing", f"{tool} -A FORWARD -i {br} -j ACCEPT"),
            *_isolation_rules(tool, br),
        ]
    if layout == NFTABLES_LAYOUT:
        return [
            ("jump_docker", f"oifname vmap: {br} : jump filter-forward-in__{br}"),
            ("jump_outgoing", f"iifname vmap: {br} : jump filter-forward-out__{br}"),
            ("established", f"filter-forward-in__{br}: ct state established,related accept"),
            ("outgoing", f"filter-forward-out__{br}: accept"),
        ]
    tool = _tool(family)
    forward = layout == FORWARD_LAYOUT
    ct = "-m conntrack --ctstate RELATED,ESTABLISHED"
    found = [
        (
            "established",
            f"{tool} -A {'DOCKER-CT' if forward else 'FORWARD'} -o {br} {ct} -j ACCEPT",
        ),
        ("jump_docker", f"{tool} -A {'DOCKER-BRIDGE' if forward else 'FORWARD'} -o {br} -j DOCKER"),
        (
            "outgoing",
            f"{tool} -A DOCKER-FORWARD -i {br} -j ACCEPT"
            if forward
            else f"{tool} -A FORWARD -i {br} ! -o {br} -j ACCEPT",
        ),
    ]
    if isolation:
        found += _isolation_rules(tool, br)
    return found


def _isolation_rules(tool: str, br: str) -> list[tuple[str, str]]:
    stages = "-j DOCKER-ISOLATION-STAGE-2"
    return [
        ("isolation", f"{tool} -A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} {stages}"),
        # Without it the network is not isolated from the others: nothing breaks, but what
        # Docker promises between networks no longer holds.
        ("isolation_drop", f"{tool} -A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP"),
    ]


def _has_family(network: DockerNetwork, family: str) -> bool:
    return any((":" in s) == (family == IPV6) for s in network.subnets)


def expected_filter_rules(fw: FirewallFacts, family: str) -> tuple[ExpectedFilterRule, ...]:
    """What Docker's networks and published ports need in the filter chains of this family."""
    expect = fw.expectations
    if expect is None:
        return ()
    layout = filter_layout(fw, family)
    names = {c.name for c in _chains_of(fw, family)}
    isolation = layout == CLASSIC_LAYOUT or (
        layout == FORWARD_LAYOUT and "DOCKER-ISOLATION-STAGE-1" in names
    )  # the ipset layout's are in its _network_rules
    major = _engine_major(fw)
    user_chain = family == IPV4 or "DOCKER-USER" in names or (major or 0) >= 23
    found = [
        ExpectedFilterRule(family, "", "", rule, layout, text)
        for rule, text in _global_rules(layout, family, user_chain)
    ]
    found += [
        ExpectedFilterRule(family, n.name, "", rule, layout, text)
        for n in _filtered_bridges(expect)
        if _has_family(n, family)
        for rule, text in _network_rules(layout, family, n.bridge, isolation)
    ]
    found += [
        ExpectedFilterRule(
            family,
            port.network,
            port.container,
            port_rule(port),
            layout,
            port_accept_text(port, layout),
            port,
        )
        for port in published_ports(expect, family, nat_judged(fw.backends, fw.expectations)[IPV6])
    ]
    return tuple(found)


def port_rule(port: PublishedTarget) -> str:
    return f"port_accept:{port.protocol}/{port.container_port}"


def family_table(family: str) -> str:
    return "ip6" if family == IPV6 else "ip"


@dataclass(frozen=True)
class PublishedTarget:
    """A published port as the forward path sees it: to a container address on a bridge."""

    container: str
    network: str
    bridge: str
    address: str
    protocol: str
    container_port: int
    family: str


def published_ports(
    expect: NatExpectations, family: str, ipv6: bool = False
) -> tuple[PublishedTarget, ...]:
    """The container address and port each published port of this family is forwarded to (one
    per container, protocol and container port), on a bridge network."""
    wanted = expected_dnats(expect, ipv6=ipv6)
    found: dict[tuple[str, str, int], PublishedTarget] = {}
    for d in wanted:
        if d.family != family:
            continue
        for address in d.addresses:
            network = _network_of(address, expect.networks)
            if network is None or network.driver != "bridge" or not network.bridge:
                continue
            found.setdefault(
                (d.container, d.protocol, d.container_port),
                PublishedTarget(
                    d.container, network.name, network.bridge, address, d.protocol,
                    d.container_port, family,
                ),
            )  # fmt: skip
            break
    return tuple(found[k] for k in sorted(found))


def port_accept_text(port: PublishedTarget, layout: str) -> str:
    if layout == NFTABLES_LAYOUT:
        return (
            f"filter-forward-in__{port.bridge}: {family_table(port.family)} daddr {port.address} "
            f"{port.protocol} dport {port.container_port} accept"
        )
    width = 128 if port.family == IPV6 else 32
    return (
        f"{_tool(port.family)} -A DOCKER -d {port.address}/{width} ! -i {port.bridge} "
        f"-o {port.bridge} -p {port.protocol} -m {port.protocol} --dport {port.container_port} "
        "-j ACCEPT"
    )


def _interface_is(pattern: str | None, name: str) -> bool:
    if pattern is None:
        return True
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return pattern == name


def _unconditional(r: FilterRule) -> bool:
    return not (
        r.source or r.destination or r.in_interface or r.out_interface or r.protocol
        or r.dport is not None or r.ct_state or r.narrowed or r.undecoded or r.match_set
    )  # fmt: skip


@lru_cache(maxsize=4096)
def _network(prefix: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        return None


def _host(r: FilterRule) -> str | None:
    """The one address a rule's -d names (a /32 or /128, not negated), else None."""
    d = r.destination
    if d is None or r.destination_negated or not d.endswith(("/32", "/128")):
        return None
    if d.endswith("/32") and ":" in d:
        return None  # an IPv6 /32 is a network
    return d.rsplit("/", 1)[0]


@dataclass
class _ChainIndex:
    """One chain's rules in order, with those that name one destination address apart: a walk
    for one address meets only the rules that can match it (Docker's DOCKER chain holds one
    ACCEPT per published port)."""

    general: list[tuple[int, FilterRule]]
    by_host: dict[str, list[tuple[int, FilterRule]]]
    # (family, chain) of the index, for lookups by chain name in any table
    chain: str = ""

    def for_address(self, address: str) -> Iterable[FilterRule]:
        named = self.by_host.get(address)
        if not named:
            return [r for _, r in self.general]
        if not self.general:
            return [r for _, r in named]
        return [r for _, r in heapq.merge(self.general, named)]


@dataclass(frozen=True)
class _FamilyView:
    """What every port's forward verdict of one family asks first."""

    unreadable: str  # the backends that could not be read, ", "-joined
    managed: bool  # Docker manages this family's firewall
    layout: str
    bases: tuple[FilterChain, ...]  # its forward-hook base chains, in the order packets meet them
    # Docker's bridges: a rule that picks packets coming in by one of them is about containers
    # of other networks (Docker's isolation), not about the clients of a published port.
    docker_bridges: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FilterIndex:
    """The filter rules of one reading, indexed once by whoever judges it (a writer, inspect,
    the source) and passed along, never kept: by (family, chain) for what is there, by
    (backend, family) and chain for walks, and what each family's verdicts ask first."""

    facts: FirewallFacts
    by_chain: dict[tuple[str, str], list[FilterRule]]
    walks: dict[tuple[str, str], dict[str, _ChainIndex]]
    by_name: dict[tuple[str, str], list[_ChainIndex]]  # (family, chain): in every table
    families: dict[str, _FamilyView]


def _family_view(fw: FirewallFacts, family: str) -> _FamilyView:
    managed = docker_manages_firewall(fw) and (
        family == IPV4
        or docker_manages_ipv6_nat(fw.backends)
        or bool(docker_filter_chains(fw, IPV6))
    )
    bases = sorted(
        (c for c in fw.filter_chains if c.family == family and c.hook == "forward"),
        key=lambda c: (c.priority, c.backend, c.table),
    )
    networks = fw.expectations.networks if fw.expectations else ()
    return _FamilyView(
        ", ".join(b.name for b in fw.backends if not b.readable),
        managed,
        filter_layout(fw, family),
        tuple(bases),
        frozenset(n.bridge for n in networks if n.driver == "bridge" and n.bridge),
    )


def filter_index(fw: FirewallFacts) -> FilterIndex:
    """The index of one reading's filter rules: build it once per judging pass, pass it on."""
    by_chain: dict[tuple[str, str], list[FilterRule]] = {}
    walks: dict[tuple[str, str], dict[str, _ChainIndex]] = {}
    for n, r in enumerate(fw.filter_rules):
        by_chain.setdefault((r.family, r.chain), []).append(r)
        chains = walks.setdefault((r.backend, r.family), {})
        chain = chains.setdefault(f"{r.table}/{r.chain}", _ChainIndex([], {}))
        host = _host(r)
        if host is None:
            chain.general.append((n, r))
        else:
            chain.by_host.setdefault(host, []).append((n, r))
    by_name: dict[tuple[str, str], list[_ChainIndex]] = {}
    for (_, family), chains in walks.items():
        for key, index in chains.items():
            by_name.setdefault((family, key.split("/", 1)[1]), []).append(index)
    families = {family: _family_view(fw, family) for family in (IPV4, IPV6)}
    return FilterIndex(fw, by_chain, walks, by_name, families)


def _rules_in(ix: FilterIndex, family: str, chain: str) -> list[FilterRule]:
    return ix.by_chain.get((family, chain), [])


def _jumps(r: FilterRule, target: str) -> bool:
    return r.verdict in ("jump", "goto") and r.target == target


def _established(r: FilterRule) -> bool:
    return r.verdict == "accept" and {"RELATED", "ESTABLISHED"} <= set(r.ct_state)


def _is_port_accept(r: FilterRule, port: PublishedTarget) -> bool:
    if r.verdict != "accept" or r.destination is None or r.destination_negated:
        return False
    network = _network(r.destination)
    address = _address(port.address)
    return (
        network is not None
        and address is not None
        and address.version == network.version
        and address in network
        and r.protocol == port.protocol
        and not r.protocol_negated
        and r.dport == port.container_port
        and (
            r.out_interface is None
            or (_interface_is(r.out_interface, port.bridge) and not r.out_negated)
        )
    )


def _has_port_accept(ix: FilterIndex, family: str, chain: str, port: PublishedTarget) -> bool:
    """The port's ACCEPT in `chain`: looked up by its address where a rule names it alone."""
    address = str(_address(port.address) or port.address)
    return any(
        _is_port_accept(r, port)
        for index in ix.by_name.get((family, chain), ())
        for r in index.for_address(address)
    )


def _vmap_jumps(ix: FilterIndex, family: str, key: str, bridge: str, chain: str) -> bool:
    return any(
        r.vmap_key == key and (bridge, "jump", chain) in r.vmap
        for r in _rules_in(ix, family, DOCKER_NFT_FORWARD)
        if r.table in DOCKER_NFT_TABLES
    )


def _any(
    ix: FilterIndex, e: ExpectedFilterRule, chain: str, test: Callable[[FilterRule], bool]
) -> bool:
    return any(test(r) for r in _rules_in(ix, e.family, chain))


def _jump_from(chain: str, target: str) -> Callable[[FilterIndex, ExpectedFilterRule, str], bool]:
    def present(ix: FilterIndex, e: ExpectedFilterRule, _br: str) -> bool:
        return _any(ix, e, chain, lambda r: _jumps(r, target) and _unconditional(r))

    return present


def _forward_or(chain: str) -> Callable[[ExpectedFilterRule], str]:
    """The chain a per-bridge rule sits in: FORWARD before Docker 28, `chain` after."""
    return lambda e: chain if e.layout == FORWARD_LAYOUT else "FORWARD"


def _isolation_jump(ix: FilterIndex, e: ExpectedFilterRule, br: str) -> bool:
    parent = "DOCKER-FORWARD" if e.layout == FORWARD_LAYOUT else "FORWARD"
    return _jump_from(parent, "DOCKER-ISOLATION-STAGE-1")(ix, e, br)


def _established_rule(ix: FilterIndex, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        ix, e, _forward_or("DOCKER-CT")(e),
        lambda r: _established(r) and r.out_interface == br and not r.out_negated,
    )  # fmt: skip


def _jump_docker(ix: FilterIndex, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        ix, e, _forward_or("DOCKER-BRIDGE")(e),
        lambda r: _jumps(r, "DOCKER") and r.out_interface == br and not r.out_negated
        and not r.ct_state,
    )  # fmt: skip


def _outgoing(ix: FilterIndex, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        ix, e, _forward_or("DOCKER-FORWARD")(e),
        lambda r: r.verdict == "accept" and r.in_interface == br and not r.in_negated
        and not r.ct_state
        and (r.out_interface is None or (r.out_interface == br and r.out_negated)),
    )  # fmt: skip


def _isolation(ix: FilterIndex, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        ix, e, "DOCKER-ISOLATION-STAGE-1",
        lambda r: _jumps(r, "DOCKER-ISOLATION-STAGE-2") and r.in_interface == br
        and not r.in_negated and r.out_interface == br and r.out_negated,
    )  # fmt: skip


def _isolation_drop(ix: FilterIndex, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        ix, e, "DOCKER-ISOLATION-STAGE-2",
        lambda r: r.verdict == "drop" and r.out_interface == br and not r.out_negated
        and r.in_interface is None and not r.destination and not r.source,
    )  # fmt: skip


def _nft_forward_chain(ix: FilterIndex, e: ExpectedFilterRule, _br: str) -> bool:
    return any(
        c.table in DOCKER_NFT_TABLES and c.name == DOCKER_NFT_FORWARD and c.hook == "forward"
        for c in _chains_of(ix.facts, e.family)
    )


def _nft_established(ix: FilterIndex, e: ExpectedFilterRule, br: str) -> bool:
    return _any(ix, e, f"filter-forward-in__{br}", _established)


def _nft_outgoing(ix: FilterIndex, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        ix, e, f"filter-forward-out__{br}", lambda r: r.verdict == "accept" and _unconditional(r)
    )


_IPTABLES_RULES: dict[str, Callable[[FilterIndex, ExpectedFilterRule, str], bool]] = {
    "jump_docker_user": _jump_from("FORWARD", "DOCKER-USER"),
    "jump_docker_forward": _jump_from("FORWARD", "DOCKER-FORWARD"),
    "jump_docker_ct": _jump_from("DOCKER-FORWARD", "DOCKER-CT"),
    "jump_docker_bridge": _jump_from("DOCKER-FORWARD", "DOCKER-BRIDGE"),
    "jump_isolation": _isolation_jump,
    "established": _established_rule,
    "jump_docker": _jump_docker,
    "outgoing": _outgoing,
    "isolation": _isolation,
    "isolation_drop": _isolation_drop,
}
_NFT_RULES: dict[str, Callable[[FilterIndex, ExpectedFilterRule, str], bool]] = {
    "forward_chain": _nft_forward_chain,
    "jump_docker": lambda ix, e, br: _vmap_jumps(
        ix, e.family, "oifname", br, f"filter-forward-in__{br}"
    ),
    "jump_outgoing": lambda ix, e, br: _vmap_jumps(
        ix, e.family, "iifname", br, f"filter-forward-out__{br}"
    ),
    "established": _nft_established,
    "outgoing": _nft_outgoing,
}


def _docker_set(r: FilterRule, family: str) -> bool:
    """`-m set --match-set docker-ext-bridges-v4 dst` (v6 for IPv6), not negated."""
    return (
        r.match_set == DOCKER_BRIDGE_SETS[family]
        and not r.match_set_src
        and not r.match_set_negated
    )


def _ipset_established(ix: FilterIndex, e: ExpectedFilterRule, _br: str) -> bool:
    return _any(ix, e, "FORWARD", lambda r: _established(r) and _docker_set(r, e.family))


def _ipset_jump_docker(ix: FilterIndex, e: ExpectedFilterRule, _br: str) -> bool:
    return _any(
        ix, e, "FORWARD",
        lambda r: _jumps(r, "DOCKER") and _docker_set(r, e.family) and not r.ct_state
        and r.out_interface is None,
    )  # fmt: skip


def has_filter_rule(ix: FilterIndex, e: ExpectedFilterRule) -> bool:
    """Whether the rule an expectation names is there (in any backend of its family)."""
    networks = ix.facts.expectations.networks if ix.facts.expectations else ()
    bridge = next((n.bridge for n in networks if n.name == e.network), "")
    nft = e.layout == NFTABLES_LAYOUT
    checks = _NFT_RULES if nft else _IPTABLES_RULES
    if e.layout == IPSET_LAYOUT:
        checks = {**checks, "established": _ipset_established, "jump_docker": _ipset_jump_docker}
    check = checks.get(e.rule)
    if check is not None:
        return check(ix, e, bridge)
    if e.port is None:
        return False
    chain = f"filter-forward-in__{e.port.bridge}" if nft else "DOCKER"
    return _has_port_accept(ix, e.family, chain, e.port)


def unmet_filter_rules(fw: FirewallFacts, ix: FilterIndex | None = None) -> tuple[str, ...]:
    ix = ix or filter_index(fw)
    judged = filter_judged(fw)
    return tuple(
        e.key
        for family in (IPV4, IPV6)
        if judged[family]
        for e in expected_filter_rules(fw, family)
        if not has_filter_rule(ix, e)
    )


def filter_verdicts(
    fw: FirewallFacts, ix: FilterIndex | None = None
) -> tuple[tuple[ExpectedFilterRule, bool], ...]:
    """Each expected filter rule and whether it is missing, in this reading and the one a
    moment before."""
    ix = ix or filter_index(fw)
    judged = filter_judged(fw)
    confirmed = set(fw.earlier_missing)
    return tuple(
        (e, e.key in confirmed and not has_filter_rule(ix, e))
        for family in (IPV4, IPV6)
        if judged[family]
        for e in expected_filter_rules(fw, family)
    )


def undecoded_filter_rules(fw: FirewallFacts) -> dict[tuple[str, str, str], int]:
    """(backend, family, table) -> rules of the forward path the decoder did not understand."""
    found: dict[tuple[str, str, str], int] = {}
    for r in fw.filter_rules:
        if r.undecoded:
            key = (r.backend, r.family, r.table)
            found[key] = found.get(key, 0) + 1
    return found


def forward_policies(fw: FirewallFacts) -> tuple[tuple[str, str, str, str, str], ...]:
    """(backend, family, table, chain, policy) of every forward-hook base chain."""
    return tuple(
        (c.backend, c.family, c.table, c.name, c.policy or "accept")
        for c in fw.filter_chains
        if c.hook == "forward"
    )


def docker_user_rules(fw: FirewallFacts) -> dict[tuple[str, str], int]:
    """(backend, family) -> rules in DOCKER-USER (the user's own policy: shown, not judged)."""
    found: dict[tuple[str, str], int] = {}
    for c in fw.filter_chains:
        if c.name == "DOCKER-USER":
            found.setdefault((c.backend, c.family), 0)
    for r in fw.filter_rules:
        if r.chain == "DOCKER-USER" and not (r.verdict == "return" and _unconditional(r)):
            found[(r.backend, r.family)] = found.get((r.backend, r.family), 0) + 1
    return found


# -- one published port's first packet through the forward hook -------------------------------

YES, NO, MAYBE, UNDECODED = "yes", "no", "maybe", "undecoded"
_MAX_DEPTH = 32  # jumps deeper than the kernel allows (ip_tables: none; nf_tables: 16)


@dataclass(frozen=True)
class _Packet:
    """A new connection from outside to a published port, after DNAT: its source address and
    input interface are unknown (anything but the bridge)."""

    family: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    protocol: str
    bridge: str


def _address_in(address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: str) -> bool | None:
    network = _network(prefix)
    if network is None:
        return None
    return address.version == network.version and address in network


@lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ruled_out(r: FilterRule, p: _Packet) -> bool:
    """A match the packet surely fails: the cheap ones, asked first."""
    return (
        (r.out_interface is not None and _interface_is(r.out_interface, p.bridge) == r.out_negated)
        or (r.protocol is not None and (r.protocol == p.protocol) == r.protocol_negated)
        or (r.dport is not None and r.dport != p.port)
        or (bool(r.ct_state) and "NEW" not in r.ct_state)
        or (r.in_interface == "+" and r.in_negated)
        or (r.in_interface == p.bridge and not r.in_negated)
        or (r.source in ("0.0.0.0/0", "::/0") and r.source_negated)
    )


def _destination(r: FilterRule, p: _Packet) -> str:
    if r.destination is None:
        return YES
    holds = _address_in(p.address, r.destination)
    return MAYBE if holds is None else (YES if holds != r.destination_negated else NO)


def _partial(r: FilterRule, p: _Packet) -> bool:
    """Matches only some of the packets: a source address, another way in, a source port."""
    return (
        (r.source is not None and r.source not in ("0.0.0.0/0", "::/0"))
        or (r.in_interface is not None and r.in_interface not in ("+", p.bridge))
        or r.narrowed
    )


def rule_matches(r: FilterRule, p: _Packet) -> str:
    """yes, no or maybe for what the rule's decoded matches say of the packet; undecoded when
    what was decoded does not rule it out and the rest could not be read. The packet comes in
    by anything but its bridge, from anywhere: a rule naming the bridge as the way in (or
    excluding it) is decided, any other name may or may not be the way in."""
    if r.other_family or _ruled_out(r, p):
        return NO
    destination = _destination(r, p)
    held = _set_holds(r, p)
    if NO in (destination, held):
        return NO
    if r.undecoded or held == UNDECODED:
        return UNDECODED
    return MAYBE if MAYBE in (destination, held) or _partial(r, p) else YES


def _set_holds(r: FilterRule, p: _Packet) -> str:
    """Whether a rule's set match holds for the packet: Docker's set of its bridges' subnets
    holds every published port's container (Docker keeps it so); a set on the source holds for
    some sources; the members of any other set are not read."""
    if r.match_set is None:
        return YES
    if r.match_set_src:
        return MAYBE
    if r.match_set == DOCKER_BRIDGE_SETS[p.family]:
        return NO if r.match_set_negated else YES
    return UNDECODED


def rule_text(r: FilterRule) -> str:
    """A filter rule as iptables -S would print its matches and target (nft rules too)."""
    parts: list[str] = []
    for flag, value, negated in (
        ("-s", r.source, r.source_negated),
        ("-d", r.destination, r.destination_negated),
        ("-i", r.in_interface, r.in_negated),
        ("-o", r.out_interface, r.out_negated),
        ("-p", r.protocol, r.protocol_negated),
    ):
        if value is not None:
            parts += ["!", flag, value] if negated else [flag, value]
    if r.dport is not None:
        parts += ["--dport", str(r.dport)]
    if r.match_set is not None:
        direction = "src" if r.match_set_src else "dst"
        parts += ["-m", "set", *(["!"] if r.match_set_negated else [])]
        parts += ["--match-set", r.match_set, direction]
    if r.ct_state:
        parts += ["-m", "conntrack", "--ctstate", ",".join(r.ct_state)]
    if r.undecoded:
        parts += [f"[{r.undecoded}]"]
    if r.vmap:
        parts += [
            f"{r.vmap_key} vmap {{{', '.join(f'{k}: {v} {c}'.strip() for k, v, c in r.vmap)}}}"
        ]
    elif r.verdict in ("jump", "goto"):
        parts += ["-j" if r.verdict == "jump" else "-g", r.target or "?"]
    elif r.verdict != "continue":
        parts += ["-j", r.verdict.upper()]
    return " ".join(parts)


@dataclass
class _Walk:
    """What a walk through the chains met: undecoded rules that could have matched."""

    rules: dict[str, _ChainIndex]
    packet: _Packet
    docker_bridges: frozenset[str] = frozenset()
    undecoded: list[FilterRule] = dataclass_field(default_factory=list)
    # Rules met that drop some of the port's packets (a source address, a way in): each with
    # the rule that drops them (itself, or the DROP of the chain it jumps to for them), and the
    # rules before it that let some packets by it (an allowlist: RETURN or ACCEPT for some).
    cuts: list[tuple[FilterRule, FilterRule, tuple[FilterRule, ...]]] = dataclass_field(
        default_factory=list
    )
    # A chain's outcome for the packet, once walked: rule sets whose chains jump to one chain
    # from many places cost one walk of it.
    outcomes: dict[str, tuple[str, FilterRule | None]] = dataclass_field(default_factory=dict)


def _vmap_step(r: FilterRule, p: _Packet) -> tuple[str, str, str] | str | None:
    """The element a verdict map picks for the packet, None for none, MAYBE when it depends on
    the unknown input interface."""
    if r.vmap_key == "oifname":
        return next((e for e in r.vmap if e[0] == p.bridge), None)
    others = [e for e in r.vmap if e[0] != p.bridge]
    return MAYBE if others else None


def _walk(walk: _Walk, table: str, chain: str, depth: int) -> tuple[str, FilterRule | None]:
    """The outcome of a chain for the packet: (accept|drop|reject|return|unknown, the rule)."""
    if depth > _MAX_DEPTH:
        return "unknown", None
    key = f"{table}/{chain}"
    if key not in walk.outcomes:
        walk.outcomes[key] = _walk_chain(walk, table, chain, depth)
    return walk.outcomes[key]


def _walk_chain(walk: _Walk, table: str, chain: str, depth: int) -> tuple[str, FilterRule | None]:
    index = walk.rules.get(f"{table}/{chain}")
    if index is None:
        return "return", None
    escapes: list[FilterRule] = []  # rules that took some packets out of the chain (allowlists)
    for r in index.for_address(str(walk.packet.address)):
        m = rule_matches(r, walk.packet)
        if m == NO:
            continue
        if m == UNDECODED:
            walk.undecoded.append(r)
            continue
        verdict, target = r.verdict, r.target
        if verdict == "vmap":
            element = _vmap_step(r, walk.packet)
            if element is None or element == MAYBE or not isinstance(element, tuple):
                continue
            verdict, target = element[1], element[2] or None
        if m == MAYBE:
            # Matches some of its packets only: neither shadows nor admits the port, but a drop
            # of those (or a jump to one) cuts some sources off.
            if _partial_step(walk, table, r, verdict, target, depth):
                escapes.append(r)
            continue
        outcome = _full_step(walk, (table, r, verdict, target, depth), escapes)
        if outcome is not None:
            return outcome
    return "return", None


def _full_step(
    walk: _Walk,
    step: tuple[str, FilterRule, str, str | None, int],
    escapes: list[FilterRule],
) -> tuple[str, FilterRule | None] | None:
    """A rule that matches all of the port's packets: where the chain ends for them (None:
    it goes on)."""
    table, r, verdict, target, depth = step
    if verdict in ("drop", "reject") and escapes:
        # An allowlist: what the earlier rules let by goes on (accepted, or back to the chain
        # that jumped here); the rest is cut here.
        walk.cuts.append((r, r, tuple(escapes)))
        return ("accept" if all(e.verdict == "accept" for e in escapes) else "return"), r
    if verdict in ("accept", "drop", "reject", "return"):
        return verdict, r
    if verdict in ("jump", "goto") and target:
        outcome, by = _walk(walk, table, target, depth + 1)
        return (outcome, by) if outcome != "return" or verdict == "goto" else None
    if verdict not in ("continue", "jump", "goto"):
        return "unknown", r
    return None


def _partial_step(  # noqa: PLR0917 (a rule's step of the walk)
    walk: _Walk, table: str, r: FilterRule, verdict: str, target: str | None, depth: int
) -> bool:
    """A rule that matches some of the port's packets: a cut where it drops them; True where
    it takes them out of the chain (accepted, or returned: an allowlist's exception)."""
    if _from_docker_bridge(r, walk.docker_bridges) or _isolation_chain(r.chain, target):
        return False  # Docker's isolation between its networks: no client of the port is cut
    if verdict in ("drop", "reject"):
        walk.cuts.append((r, r, ()))
    elif verdict in ("jump", "goto") and target:
        outcome, by = _walk(walk, table, target, depth + 1)
        if outcome in ("drop", "reject") and by is not None:
            walk.cuts.append((r, by, ()))
    return verdict in ("accept", "return")


def _isolation_chain(*chains: str | None) -> bool:
    """Docker's isolation chains (by name, where its bridges are not known: no Engine API)."""
    return any(c is not None and c.startswith("DOCKER-ISOLATION-STAGE-") for c in chains)


def _from_docker_bridge(r: FilterRule, bridges: frozenset[str]) -> bool:
    return (
        r.in_interface is not None
        and not r.in_negated
        and any(_interface_is(r.in_interface, b) for b in bridges)
    )


def _sources(r: FilterRule) -> str:
    """Which of a published port's packets a rule picks (those it can pick at all)."""
    found = []
    if r.source is not None and r.source not in ("0.0.0.0/0", "::/0"):
        found.append(f"{'not ' if r.source_negated else ''}from {r.source}")
    if r.in_interface is not None and r.in_interface != "+":
        found.append(f"{'not ' if r.in_negated else ''}in by {r.in_interface}")
    if r.match_set is not None and r.match_set_src:
        found.append(f"{'not ' if r.match_set_negated else ''}from set {r.match_set}")
    if r.narrowed:
        found.append("some source ports")
    return ", ".join(found) or "some packets"


def _cut(r: FilterRule, by: FilterRule, escapes: tuple[FilterRule, ...]) -> Cut:
    text = rule_text(r) if r is by else f"{rule_text(r)} (then {by.chain}: {rule_text(by)})"
    sources = (
        "all but " + " or ".join(f"{_sources(e)} (rule {e.position})" for e in escapes)
        if escapes
        else _sources(r)
    )
    return Cut(f"{r.backend} {r.table}/{r.chain} rule {r.position}", text, sources)


def _restricted(
    cuts: list[tuple[FilterRule, FilterRule, tuple[FilterRule, ...]]], accepted: str
) -> FilterVerdict:
    found = tuple(dict.fromkeys(_cut(r, by, escapes) for r, by, escapes in cuts))
    first = found[0]
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    return FilterVerdict(
        "restricted",
        f"{accepted}, but {first.rule} drops its connections {first.sources}: {first.text}{more}",
        found,
    )


def _through_bases(ix: FilterIndex, packet: _Packet) -> FilterVerdict | None:
    """Each forward-hook base chain of the family in turn (both backends: a packet meets every
    one, and the first drop ends it); a verdict when one does not accept, None when all do."""
    undecoded: list[FilterRule] = []
    cuts: list[tuple[FilterRule, FilterRule, tuple[FilterRule, ...]]] = []
    view = ix.families[packet.family]
    for base in view.bases:
        walk = _Walk(ix.walks.get((base.backend, packet.family), {}), packet, view.docker_bridges)
        outcome, by = _walk(walk, base.table, base.name, 0)
        undecoded += walk.undecoded
        cuts += walk.cuts
        where = f"{base.backend} {family_table(packet.family)} {base.table}"
        if outcome == "unknown":
            return FilterVerdict("unknown", f"{where}: could not follow {by and rule_text(by)}")
        if outcome == "accept":
            continue
        if undecoded:
            return _undecoded_verdict(undecoded)
        if outcome == "return" and (base.policy or "accept") == "accept":
            continue
        if outcome == "return":
            policy = (base.policy or "").upper()
            return FilterVerdict("broken", f"{where}: not accepted, {base.name} policy {policy}")
        if by is not None:
            return FilterVerdict(
                "broken", f"shadowed by {by.chain} rule {by.position}: {rule_text(by)}"
            )
    if undecoded:
        return _undecoded_verdict(undecoded)
    return _restricted(cuts, "accepted") if cuts else None


def forward_verdict(  # noqa: PLR0911, PLR0917 (a return per verdict; the port verdicts call it so)
    judged: FirewallFacts | FilterIndex,
    family: str,
    container_address: str,
    container_port: int,
    protocol: str,
    bridge: str,
) -> FilterVerdict:
    """Whether a new connection to a published port (after its DNAT: to container_address,
    container_port, protocol, leaving by bridge) passes every forward-hook filter chain of its
    family, in both backends: ok when the port's ACCEPT is there and the walk from each base
    chain (FORWARD, DOCKER-USER, the isolation chains, DOCKER; Docker 29's filter-FORWARD) ends
    in an accept; broken naming the DROP or REJECT that matches it first, or the missing
    ACCEPT; unknown when a backend is unreadable, Docker manages no firewall here, or a rule
    the decoder did not understand could have decided it. Rules that match only some of its
    packets (a source address, an input interface other than the bridge) neither shadow nor
    admit it; where such a rule (or the chain it jumps to) drops them, the port accepted is
    restricted, naming each such rule and the sources it cuts off. IP forwarding and the
    bridge port are other hops, not judged here. Judging many ports of one reading: pass its
    filter_index, built once."""
    ix = judged if isinstance(judged, FilterIndex) else filter_index(judged)
    address, view = _address(container_address), ix.families.get(family)
    if address is None or view is None:
        return FilterVerdict("unknown", f"not an {family} address: {container_address!r}")
    if view.unreadable:
        return FilterVerdict("unknown", f"firewall backend unreadable: {view.unreadable}")
    if not view.managed:
        what = "no ip6tables" if family == IPV6 else "no firewall"
        return FilterVerdict("unknown", f"Docker manages {what} here")
    packet = _Packet(family, address, container_port, protocol, bridge)
    nft = view.layout == NFTABLES_LAYOUT
    accept_chain = f"filter-forward-in__{bridge}" if nft else "DOCKER"
    target = PublishedTarget("", "", bridge, container_address, protocol, container_port, family)
    verdict = _through_bases(ix, packet)
    if not _has_port_accept(ix, family, accept_chain, target):
        # Without its ACCEPT the packet falls through: to Docker 28's per-bridge DROP, or to the
        # FORWARD policy: DROP as Docker sets it when it switched forwarding on itself, but
        # ACCEPT on a host that had forwarding on already, where the port still works. Only a
        # walk that understood every rule it met and accepts says so (an undecoded rule gives
        # no verdict here: broken, as the missing rule always read).
        missing = f"no ACCEPT in {accept_chain} for {container_address} {protocol}/{container_port}"
        if verdict is None:
            return FilterVerdict("ok", f"{missing}, but the forward path accepts it")
        if verdict.state == "restricted":
            return verdict
        return FilterVerdict("broken", missing)
    if verdict is not None:
        return verdict
    return FilterVerdict("ok", f"accepted; {accept_chain} holds the port's ACCEPT")


def _undecoded_verdict(rules: list[FilterRule]) -> FilterVerdict:
    r = rules[0]
    what = r.undecoded or f"the members of set {r.match_set}"
    return FilterVerdict(
        "unknown",
        f"{r.backend} {r.table}/{r.chain} rule {r.position} could match and was not "
        f"understood ({what})",
    )


# -- what the published-port verdicts (collectors/ports) need confirmed by this source -------


def forward_key(family: str, address: str, protocol: str, container_port: int) -> str:
    return f"forward/{family}/{address}/{protocol}/{container_port}"


def forwarding_key(family: str) -> str:
    return f"forwarding/{family}"


def forwarding_on(fw: FirewallFacts, family: str) -> bool | None:
    """net.ipv4.ip_forward or net.ipv6.conf.all.forwarding; None if unread."""
    if fw.forwarding is None:
        return None
    value = fw.forwarding.ipv4_forward if family == IPV4 else fw.forwarding.ipv6_forwarding
    return None if value is None else value != 0


def _judged_targets(fw: FirewallFacts) -> dict[str, tuple[PublishedTarget, ...]]:
    """Each judged family's published-port targets."""
    if fw.expectations is None:
        return {}
    judged = filter_judged(fw)
    ipv6 = nat_judged(fw.backends, fw.expectations)[IPV6]
    return {
        family: published_ports(fw.expectations, family, ipv6=ipv6)
        for family in (IPV4, IPV6)
        if judged[family]
    }


def port_path_suspects(fw: FirewallFacts, ix: FilterIndex | None = None) -> tuple[str, ...]:
    """A published port whose forward path looks blocked (forward_verdict broken: a missing
    ACCEPT or a DROP shadowing it), and IP forwarding off while a port of that family is
    published: the source reads again before the port verdicts may call them broken."""
    targets = _judged_targets(fw)
    found = [
        forwarding_key(family)
        for family, published in targets.items()
        if published and forwarding_on(fw, family) is False
    ]
    if any(targets.values()):
        ix = ix or filter_index(fw)
        found += [
            forward_key(family, t.address, t.protocol, t.container_port)
            for family, published in targets.items()
            for t in published
            if forward_verdict(ix, family, t.address, t.container_port, t.protocol, t.bridge).state
            == "broken"
        ]
    return tuple(found)
