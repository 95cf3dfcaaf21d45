"""The nat collector's verdicts: the MASQUERADE and DNAT rules Docker's networks and published
ports need, in which family, and which are missing. Pure: recorded facts drive these."""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import lru_cache
from typing import Any

from exporter.collectors.nat.facts import NatExpectations, NatFacts
from exporter.readers.docker_api import (
    ContainerRecord,
    DockerNetwork,
)
from exporter.readers.netfilter import (
    DOCKER_CHAIN_PREFIX,
    DOCKER_NFT_TABLES,
    FilterChain,
    FilterRule,
    FirewallBackend,
    NatRule,
)

IPV4, IPV6 = "ipv4", "ipv6"
# com.docker.network.bridge.gateway_mode_ipv6 values under which Docker NATs a network's IPv6
# traffic ("" is the option unset: nat, and every engine before 27 behaves so). "routed" and
# "isolated" write no MASQUERADE and no DNAT.
_IPV6_NAT_GATEWAY_MODES = ("", "nat", "nat-unprotected")


@dataclass(frozen=True)
class ExpectedMasquerade:
    """A bridge network with masquerading on needs `-s <subnet> ! -o <bridge> -j MASQUERADE`
    (in ip6tables for an IPv6 subnet)."""

    network: str
    subnet: str
    bridge: str
    family: str = IPV4

    @property
    def key(self) -> str:
        return f"masquerade/{self.network}/{self.subnet}"


@dataclass(frozen=True)
class ExpectedDnat:
    """A published port needs a DNAT from its host port to the container's address and port:
    one in iptables for an IPv4 binding, one in ip6tables for an IPv6 binding."""

    container: str
    container_id: str
    protocol: str
    host_port: int
    container_port: int
    addresses: tuple[str, ...]
    family: str = IPV4

    @property
    def key(self) -> str:
        return f"dnat/{self.family}/{self.container_id}/{self.protocol}/{self.host_port}"


def _own_tables(chains: Iterable[str]) -> set[str]:
    return {c.split("/", 1)[0] for c in chains}


def docker_firewall(backends: tuple[FirewallBackend, ...]) -> tuple[str, ...]:
    """Where Docker keeps its rules, by the chains and tables it made: iptables-legacy,
    iptables-nft, nftables (Docker 29's own backend), or none (dockerd --iptables=false)."""
    found = []
    for backend in backends:
        chains = backend.docker_chains
        if backend.name == "legacy" and chains:
            found.append("iptables-legacy")
        elif backend.name == "nftables":
            if any(c.split("/", 1)[0] in ("nat", "filter") for c in chains):
                found.append("iptables-nft")
            if any(c.split("/", 1)[0] not in ("nat", "filter") for c in chains):
                found.append("nftables")
    return tuple(sorted(found)) or ("none",)


def docker_manages_ipv6_nat(backends: tuple[FirewallBackend, ...]) -> bool:
    """Docker writes IPv6 NAT rules: a DOCKER chain in an ip6 nat table (ip6tables, legacy or
    nft) or Docker 29's own ip6 table. Without one (dockerd --ip6tables=false, the default
    before Docker 27, or no IPv6 at all) IPv6 is not judged."""
    return any(
        any(
            c.split("/", 1) == ["nat", "DOCKER"] or c.split("/", 1)[0] not in ("nat", "filter")
            for c in b.docker_chains_ipv6
        )
        for b in backends
    )


def rules_split_across_backends(backends: tuple[FirewallBackend, ...]) -> bool:
    """Both backends hold nat rules of one family (IPv4 packets meet both iptables rule sets;
    IPv6 packets both ip6tables ones). Docker's IPv4 rules in one backend and someone's IPv6
    rules in the other never meet the same packet."""
    ipv4 = sum(1 for b in backends if b.nat_rules > 0)
    ipv6 = sum(1 for b in backends if b.nat_rules_ipv6 > 0)
    return ipv4 > 1 or ipv6 > 1


def _nats_ipv6(network: DockerNetwork) -> bool:
    return network.enable_ipv6 and network.gateway_mode_ipv6 in _IPV6_NAT_GATEWAY_MODES


def expected_masquerades(
    expect: NatExpectations, ipv6: bool = False
) -> tuple[ExpectedMasquerade, ...]:
    """One per subnet of each masquerading bridge network; IPv6 subnets only when ipv6 (Docker
    manages ip6tables), of networks with IPv6 on whose gateway mode NATs."""
    return tuple(
        ExpectedMasquerade(
            network=n.name, subnet=subnet, bridge=n.bridge, family=IPV6 if ":" in subnet else IPV4
        )
        for n in expect.networks
        if n.driver == "bridge" and n.ip_masquerade and not n.internal and n.bridge
        for subnet in n.subnets
        if ":" not in subnet or (ipv6 and _nats_ipv6(n))
    )


def _ipv6_network(text: str) -> ipaddress.IPv6Network | None:
    try:
        return ipaddress.IPv6Network(text, strict=False)
    except ValueError:
        return None


def _ipv6_address(text: str) -> ipaddress.IPv6Address | None:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def _nat_ipv6_addresses(
    container: ContainerRecord, networks: Iterable[DockerNetwork]
) -> tuple[str, ...]:
    """The container's IPv6 addresses, but those on networks whose IPv6 is routed, not NATed
    (gateway_mode_ipv6 routed or isolated: Docker writes them no DNAT)."""
    unnated = [
        subnet
        for n in networks
        if not _nats_ipv6(n)
        for text in n.subnets
        if ":" in text and (subnet := _ipv6_network(text)) is not None
    ]
    return tuple(
        text
        for text in container.ipv6_addresses
        if (address := _ipv6_address(text)) is not None
        and not any(address in subnet for subnet in unnated)
    )


def expected_dnats(expect: NatExpectations, ipv6: bool = False) -> tuple[ExpectedDnat, ...]:
    """Each published port of a running container: an IPv4 binding to one of its IPv4
    addresses; an IPv6 binding (`::` or a given IPv6 address), only when ipv6 (Docker manages
    ip6tables), to one of its IPv6 addresses on a NATed network. An IPv6 binding of a container
    without one is served by docker-proxy, with no DNAT."""
    found: dict[tuple[str, str, str, int], ExpectedDnat] = {}
    for c in expect.containers:
        if c.state != "running":
            continue
        v6 = _nat_ipv6_addresses(c, expect.networks) if ipv6 else ()
        for p in c.ports:
            family = IPV6 if ":" in p.host_ip else IPV4
            addresses = v6 if family == IPV6 else c.addresses
            if not addresses:
                continue
            found[(family, c.id, p.protocol, p.host_port)] = ExpectedDnat(
                container=c.name,
                container_id=c.id,
                protocol=p.protocol,
                host_port=p.host_port,
                container_port=p.container_port,
                addresses=addresses,
                family=family,
            )
    return tuple(found[k] for k in sorted(found))


def has_masquerade(expected: ExpectedMasquerade, rules: Iterable[NatRule]) -> bool:
    return any(
        r.action == "masquerade"
        and r.family == expected.family
        and r.source == expected.subnet
        and r.out_negated
        and r.out_interface == expected.bridge
        for r in rules
    )


def has_dnat(expected: ExpectedDnat, rules: Iterable[NatRule]) -> bool:
    return any(
        r.action == "dnat"
        and r.family == expected.family
        and r.protocol == expected.protocol
        and r.dport == expected.host_port
        and r.to_port == expected.container_port
        and r.to_address in expected.addresses
        for r in rules
    )


def nat_destination(rule: NatRule) -> str:
    """A DNAT's --to-destination as iptables and ip6tables print it: address:port, or
    [address]:port for IPv6."""
    address, port = rule.to_address or "", rule.to_port
    if not port:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}".lstrip(":")


def can_judge_nat(nat: NatFacts) -> bool:
    """Only with every backend read, the Engine API's view, and Docker managing a firewall."""
    return (
        nat.expectations is not None
        and all(b.readable for b in nat.backends)
        and docker_firewall(nat.backends) != ("none",)
    )


def judged_families(nat: NatFacts) -> dict[str, bool]:
    """Whether missing-rule verdicts are given for IPv4 and for IPv6: IPv6 needs, on top of
    what IPv4 needs, Docker managing IPv6 NAT (a host without IPv6 rules is not judged)."""
    ipv4 = can_judge_nat(nat)
    return {IPV4: ipv4, IPV6: ipv4 and docker_manages_ipv6_nat(nat.backends)}


def _expected(nat: NatFacts) -> tuple[tuple[ExpectedMasquerade, ...], tuple[ExpectedDnat, ...]]:
    judged = judged_families(nat)
    if not judged[IPV4] or nat.expectations is None:
        return (), ()
    return (
        expected_masquerades(nat.expectations, ipv6=judged[IPV6]),
        expected_dnats(nat.expectations, ipv6=judged[IPV6]),
    )


def unmet_expectations(nat: NatFacts) -> tuple[str, ...]:
    """Keys of the expected rules this reading lacks (before any confirmation)."""
    masquerades, dnats = _expected(nat)
    return tuple(
        [e.key for e in masquerades if not has_masquerade(e, nat.rules)]
        + [e.key for e in dnats if not has_dnat(e, nat.rules)]
    )


def nat_verdicts(
    nat: NatFacts,
) -> tuple[tuple[tuple[ExpectedMasquerade, bool], ...], tuple[tuple[ExpectedDnat, bool], ...]]:
    """Each expected rule and whether it is missing: absent now and in the reading a moment
    before, so a network or container mid-creation is not reported."""
    masquerades, dnats = _expected(nat)
    confirmed = set(nat.earlier_missing)
    return (
        tuple((e, e.key in confirmed and not has_masquerade(e, nat.rules)) for e in masquerades),
        tuple((e, e.key in confirmed and not has_dnat(e, nat.rules)) for e in dnats),
    )


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
DOCKER_NFT_FORWARD = "filter-FORWARD"


@dataclass(frozen=True)
class FilterVerdict:
    """Whether a published port's first packet passes the forward hook's filter chains."""

    state: str  # "ok", "broken", "unknown"
    reason: str


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


def _chains_of(nat: NatFacts, family: str) -> list[FilterChain]:
    return [c for c in nat.filter_chains if c.family == family]


def filter_layout(nat: NatFacts, family: str) -> str:
    """The layout Docker's filter rules of this family follow, by the chains that exist, or, with
    none left (a firewall reload flushed them), by the nat side and the engine's version."""
    names = {(c.table, c.name) for c in _chains_of(nat, family)}
    if any(t in DOCKER_NFT_TABLES for t, _ in names) or (
        "nftables" in docker_firewall(nat.backends)
    ):
        return NFTABLES_LAYOUT
    if any(n == "DOCKER-FORWARD" for _, n in names):
        return FORWARD_LAYOUT
    if any(n == "DOCKER" for _, n in names):
        return CLASSIC_LAYOUT
    return FORWARD_LAYOUT if (_engine_major(nat) or 0) >= 28 else CLASSIC_LAYOUT


def docker_filter_chains(nat: NatFacts, family: str) -> tuple[str, ...]:
    """ "table/chain" of the filter chains Docker made for this family."""
    return tuple(
        sorted(
            f"{c.table}/{c.name}"
            for c in _chains_of(nat, family)
            if c.name.startswith(DOCKER_CHAIN_PREFIX) or c.table in DOCKER_NFT_TABLES
        )
    )


def docker_manages_firewall(nat: NatFacts) -> bool:
    """dockerd's own setting (--iptables, daemon.json) where it could be read; else whether any
    of its chains or tables exist."""
    if nat.docker_iptables is not None:
        return nat.docker_iptables
    return docker_firewall(nat.backends) != ("none",) or bool(
        docker_filter_chains(nat, IPV4) or docker_filter_chains(nat, IPV6)
    )


def filter_judged(nat: NatFacts) -> dict[str, bool]:
    """Missing filter rules are judged with every backend read, the Engine API's view, and
    Docker managing a firewall (by its setting: a firewall reload that left it no chain is
    judged); IPv6 when Docker manages IPv6 NAT or made IPv6 filter chains."""
    ipv4 = (
        nat.expectations is not None
        and all(b.readable for b in nat.backends)
        and docker_manages_firewall(nat)
    )
    ipv6 = ipv4 and (docker_manages_ipv6_nat(nat.backends) or bool(docker_filter_chains(nat, IPV6)))
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


def _engine_major(nat: NatFacts) -> int | None:
    version = nat.expectations.engine_version if nat.expectations else ""
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
        stages = "-j DOCKER-ISOLATION-STAGE-2"
        found.append(
            ("isolation", f"{tool} -A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} {stages}")
        )
        # Without it the network is not isolated from the others: nothing breaks, but what
        # Docker promises between networks no longer holds.
        found.append(("isolation_drop", f"{tool} -A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP"))
    return found


def _has_family(network: DockerNetwork, family: str) -> bool:
    return any((":" in s) == (family == IPV6) for s in network.subnets)


def expected_filter_rules(nat: NatFacts, family: str) -> tuple[ExpectedFilterRule, ...]:
    """What Docker's networks and published ports need in the filter chains of this family."""
    expect = nat.expectations
    if expect is None:
        return ()
    layout = filter_layout(nat, family)
    names = {c.name for c in _chains_of(nat, family)}
    isolation = layout == CLASSIC_LAYOUT or (
        layout == FORWARD_LAYOUT and "DOCKER-ISOLATION-STAGE-1" in names
    )
    major = _engine_major(nat)
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
        for port in published_ports(expect, family, judged_families(nat)[IPV6])
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
        or r.dport is not None or r.ct_state or r.narrowed or r.undecoded
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


@dataclass
class _FilterIndex:
    """The filter rules of one reading, indexed once: by (family, chain) for what is there,
    by (backend, family) and chain for walks."""

    by_chain: dict[tuple[str, str], list[FilterRule]]
    walks: dict[tuple[str, str], dict[str, _ChainIndex]]
    by_name: dict[tuple[str, str], list[_ChainIndex]]  # (family, chain): in every table
    # What forward_verdict works out once per family, (family, "") and (family, "bases"), and
    # each port's verdict, by its arguments.
    memo: dict[tuple[str, ...], Any] = dataclass_field(default_factory=dict)


def _build_index(nat: NatFacts) -> _FilterIndex:
    by_chain: dict[tuple[str, str], list[FilterRule]] = {}
    walks: dict[tuple[str, str], dict[str, _ChainIndex]] = {}
    for n, r in enumerate(nat.filter_rules):
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
    return _FilterIndex(by_chain, walks, by_name)


_last_index: tuple[NatFacts, _FilterIndex] | None = None


def _index(nat: NatFacts) -> _FilterIndex:
    """The index of these facts, built once: every port's verdict of a render asks the same
    reading (a tuple swap: a racing thread at worst builds it again)."""
    global _last_index  # noqa: PLW0603 (a one-entry cache of a pure function)
    cached = _last_index
    if cached is not None and cached[0] is nat:
        return cached[1]
    built = _build_index(nat)
    _last_index = (nat, built)
    return built


def _rules_in(nat: NatFacts, family: str, chain: str) -> list[FilterRule]:
    return _index(nat).by_chain.get((family, chain), [])


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


def _has_port_accept(nat: NatFacts, family: str, chain: str, port: PublishedTarget) -> bool:
    """The port's ACCEPT in `chain`: looked up by its address where a rule names it alone."""
    address = str(_address(port.address) or port.address)
    return any(
        _is_port_accept(r, port)
        for index in _index(nat).by_name.get((family, chain), ())
        for r in index.for_address(address)
    )


def _vmap_jumps(nat: NatFacts, family: str, key: str, bridge: str, chain: str) -> bool:
    return any(
        r.vmap_key == key and (bridge, "jump", chain) in r.vmap
        for r in _rules_in(nat, family, DOCKER_NFT_FORWARD)
        if r.table in DOCKER_NFT_TABLES
    )


def _any(
    nat: NatFacts, e: ExpectedFilterRule, chain: str, test: Callable[[FilterRule], bool]
) -> bool:
    return any(test(r) for r in _rules_in(nat, e.family, chain))


def _jump_from(chain: str, target: str) -> Callable[[NatFacts, ExpectedFilterRule, str], bool]:
    def present(nat: NatFacts, e: ExpectedFilterRule, _br: str) -> bool:
        return _any(nat, e, chain, lambda r: _jumps(r, target) and _unconditional(r))

    return present


def _forward_or(chain: str) -> Callable[[ExpectedFilterRule], str]:
    """The chain a per-bridge rule sits in: FORWARD before Docker 28, `chain` after."""
    return lambda e: chain if e.layout == FORWARD_LAYOUT else "FORWARD"


def _isolation_jump(nat: NatFacts, e: ExpectedFilterRule, br: str) -> bool:
    parent = "DOCKER-FORWARD" if e.layout == FORWARD_LAYOUT else "FORWARD"
    return _jump_from(parent, "DOCKER-ISOLATION-STAGE-1")(nat, e, br)


def _established_rule(nat: NatFacts, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        nat, e, _forward_or("DOCKER-CT")(e),
        lambda r: _established(r) and r.out_interface == br and not r.out_negated,
    )  # fmt: skip


def _jump_docker(nat: NatFacts, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        nat, e, _forward_or("DOCKER-BRIDGE")(e),
        lambda r: _jumps(r, "DOCKER") and r.out_interface == br and not r.out_negated
        and not r.ct_state,
    )  # fmt: skip


def _outgoing(nat: NatFacts, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        nat, e, _forward_or("DOCKER-FORWARD")(e),
        lambda r: r.verdict == "accept" and r.in_interface == br and not r.in_negated
        and not r.ct_state
        and (r.out_interface is None or (r.out_interface == br and r.out_negated)),
    )  # fmt: skip


def _isolation(nat: NatFacts, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        nat, e, "DOCKER-ISOLATION-STAGE-1",
        lambda r: _jumps(r, "DOCKER-ISOLATION-STAGE-2") and r.in_interface == br
        and not r.in_negated and r.out_interface == br and r.out_negated,
    )  # fmt: skip


def _isolation_drop(nat: NatFacts, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        nat, e, "DOCKER-ISOLATION-STAGE-2",
        lambda r: r.verdict == "drop" and r.out_interface == br and not r.out_negated
        and r.in_interface is None and not r.destination and not r.source,
    )  # fmt: skip


def _nft_forward_chain(nat: NatFacts, e: ExpectedFilterRule, _br: str) -> bool:
    return any(
        c.table in DOCKER_NFT_TABLES and c.name == DOCKER_NFT_FORWARD and c.hook == "forward"
        for c in _chains_of(nat, e.family)
    )


def _nft_established(nat: NatFacts, e: ExpectedFilterRule, br: str) -> bool:
    return _any(nat, e, f"filter-forward-in__{br}", _established)


def _nft_outgoing(nat: NatFacts, e: ExpectedFilterRule, br: str) -> bool:
    return _any(
        nat, e, f"filter-forward-out__{br}", lambda r: r.verdict == "accept" and _unconditional(r)
    )


_IPTABLES_RULES: dict[str, Callable[[NatFacts, ExpectedFilterRule, str], bool]] = {
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
_NFT_RULES: dict[str, Callable[[NatFacts, ExpectedFilterRule, str], bool]] = {
    "forward_chain": _nft_forward_chain,
    "jump_docker": lambda nat, e, br: _vmap_jumps(
        nat, e.family, "oifname", br, f"filter-forward-in__{br}"
    ),
    "jump_outgoing": lambda nat, e, br: _vmap_jumps(
        nat, e.family, "iifname", br, f"filter-forward-out__{br}"
    ),
    "established": _nft_established,
    "outgoing": _nft_outgoing,
}


def has_filter_rule(nat: NatFacts, e: ExpectedFilterRule) -> bool:
    """Whether the rule an expectation names is there (in any backend of its family)."""
    networks = nat.expectations.networks if nat.expectations else ()
    bridge = next((n.bridge for n in networks if n.name == e.network), "")
    nft = e.layout == NFTABLES_LAYOUT
    check = (_NFT_RULES if nft else _IPTABLES_RULES).get(e.rule)
    if check is not None:
        return check(nat, e, bridge)
    port = _port_of(nat, e)
    if port is None:
        return False
    chain = f"filter-forward-in__{port.bridge}" if nft else "DOCKER"
    return _has_port_accept(nat, e.family, chain, port)


def _port_of(_nat: NatFacts, e: ExpectedFilterRule) -> PublishedTarget | None:
    return e.port


def unmet_filter_rules(nat: NatFacts) -> tuple[str, ...]:
    judged = filter_judged(nat)
    return tuple(
        e.key
        for family in (IPV4, IPV6)
        if judged[family]
        for e in expected_filter_rules(nat, family)
        if not has_filter_rule(nat, e)
    )


def filter_verdicts(nat: NatFacts) -> tuple[tuple[ExpectedFilterRule, bool], ...]:
    """Each expected filter rule and whether it is missing, in this reading and the one a
    moment before."""
    judged = filter_judged(nat)
    confirmed = set(nat.earlier_missing)
    return tuple(
        (e, e.key in confirmed and not has_filter_rule(nat, e))
        for family in (IPV4, IPV6)
        if judged[family]
        for e in expected_filter_rules(nat, family)
    )


def undecoded_filter_rules(nat: NatFacts) -> dict[tuple[str, str, str], int]:
    """(backend, family, table) -> rules of the forward path the decoder did not understand."""
    found: dict[tuple[str, str, str], int] = {}
    for r in nat.filter_rules:
        if r.undecoded:
            key = (r.backend, r.family, r.table)
            found[key] = found.get(key, 0) + 1
    return found


def forward_policies(nat: NatFacts) -> tuple[tuple[str, str, str, str, str], ...]:
    """(backend, family, table, chain, policy) of every forward-hook base chain."""
    return tuple(
        (c.backend, c.family, c.table, c.name, c.policy or "accept")
        for c in nat.filter_chains
        if c.hook == "forward"
    )


def docker_user_rules(nat: NatFacts) -> dict[tuple[str, str], int]:
    """(backend, family) -> rules in DOCKER-USER (the user's own policy: shown, not judged)."""
    found: dict[tuple[str, str], int] = {}
    for c in nat.filter_chains:
        if c.name == "DOCKER-USER":
            found.setdefault((c.backend, c.family), 0)
    for r in nat.filter_rules:
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
    if destination == NO:
        return NO
    if r.undecoded:
        return UNDECODED
    return MAYBE if destination == MAYBE or _partial(r, p) else YES


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
    undecoded: list[FilterRule] = dataclass_field(default_factory=list)
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
            continue  # matches some of its packets only: neither shadows nor admits the port
        if verdict in ("accept", "drop", "reject"):
            return verdict, r
        if verdict == "return":
            return "return", r
        if verdict in ("jump", "goto") and target:
            outcome, by = _walk(walk, table, target, depth + 1)
            if outcome != "return" or verdict == "goto":
                return outcome, by
        elif verdict not in ("continue", "jump", "goto"):
            return "unknown", r
    return "return", None


def _family_rules(facts: NatFacts, family: str, backend: str) -> dict[str, _ChainIndex]:
    return _index(facts).walks.get((backend, family), {})


def _through_bases(facts: NatFacts, packet: _Packet) -> FilterVerdict | None:
    """Each forward-hook base chain of the family in turn (both backends: a packet meets every
    one, and the first drop ends it); a verdict when one does not accept, None when all do."""
    index = _index(facts)
    if (packet.family, "bases") not in index.memo:
        index.memo[(packet.family, "bases")] = sorted(
            (c for c in facts.filter_chains if c.family == packet.family and c.hook == "forward"),
            key=lambda c: (c.priority, c.backend, c.table),
        )
    bases: list[FilterChain] = index.memo[(packet.family, "bases")]
    undecoded: list[FilterRule] = []
    for base in bases:
        walk = _Walk(_family_rules(facts, packet.family, base.backend), packet)
        outcome, by = _walk(walk, base.table, base.name, 0)
        undecoded += walk.undecoded
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
    return _undecoded_verdict(undecoded) if undecoded else None


def forward_verdict(  # noqa: PLR0917 (the signature the port verdicts call)
    facts: NatFacts,
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
    admit it. IP forwarding and the bridge port are other hops, not judged here."""
    index = _index(facts)
    asked = (family, container_address, str(container_port), protocol, bridge)
    if asked not in index.memo:  # the nat source and the port verdicts ask the same reading
        index.memo[asked] = _forward_verdict(
            facts, index, family, container_address, container_port, protocol, bridge
        )
    verdict: FilterVerdict = index.memo[asked]
    return verdict


def _forward_verdict(  # noqa: PLR0911, PLR0917
    facts: NatFacts,
    index: _FilterIndex,
    family: str,
    container_address: str,
    container_port: int,
    protocol: str,
    bridge: str,
) -> FilterVerdict:
    address = _address(container_address)
    if address is None:
        return FilterVerdict("unknown", f"not an address: {container_address!r}")
    if (family, "") not in index.memo:  # what every port of the family asks first
        unreadable = ", ".join(b.name for b in facts.backends if not b.readable)
        managed = docker_manages_firewall(facts) and (
            family == IPV4
            or docker_manages_ipv6_nat(facts.backends)
            or bool(docker_filter_chains(facts, IPV6))
        )
        index.memo[(family, "")] = (unreadable, managed, filter_layout(facts, family))
    unreadable, managed, layout = index.memo[(family, "")]
    if unreadable:
        return FilterVerdict("unknown", f"firewall backend unreadable: {unreadable}")
    if not managed:
        what = "no ip6tables" if family == IPV6 else "no firewall"
        return FilterVerdict("unknown", f"Docker manages {what} here")
    packet = _Packet(family, address, container_port, protocol, bridge)
    nft = layout == NFTABLES_LAYOUT
    accept_chain = f"filter-forward-in__{bridge}" if nft else "DOCKER"
    target = PublishedTarget("", "", bridge, container_address, protocol, container_port, family)
    has_accept = _has_port_accept(facts, family, accept_chain, target)
    verdict = _through_bases(facts, packet)
    if not has_accept:
        # Without its ACCEPT the packet falls through: to Docker 28's per-bridge DROP, or to the
        # FORWARD policy: DROP as Docker sets it when it switched forwarding on itself, but
        # ACCEPT on a host that had forwarding on already, where the port still works. Only a
        # walk that understood every rule it met and accepts says so (an undecoded rule gives
        # no verdict here: broken, as the missing rule always read).
        address_port = f"{container_address} {protocol}/{container_port}"
        missing = f"no ACCEPT in {accept_chain} for {address_port}"
        if verdict is None:
            return FilterVerdict("ok", f"{missing}, but the forward path accepts it")
        return FilterVerdict("broken", missing)
    if verdict is not None:
        return verdict
    return FilterVerdict("ok", f"accepted; {accept_chain} holds the port's ACCEPT")


def _undecoded_verdict(rules: list[FilterRule]) -> FilterVerdict:
    r = rules[0]
    return FilterVerdict(
        "unknown",
        f"{r.backend} {r.table}/{r.chain} rule {r.position} could match and was not "
        f"understood ({r.undecoded})",
    )


# -- what the published-port verdicts (collectors/ports) need confirmed by this source -------


def forward_key(family: str, address: str, protocol: str, container_port: int) -> str:
    return f"forward/{family}/{address}/{protocol}/{container_port}"


def forwarding_key(family: str) -> str:
    return f"forwarding/{family}"


def forwarding_on(nat: NatFacts, family: str) -> bool | None:
    """net.ipv4.ip_forward or net.ipv6.conf.all.forwarding; None if unread."""
    if nat.forwarding is None:
        return None
    value = nat.forwarding.ipv4_forward if family == IPV4 else nat.forwarding.ipv6_forwarding
    return None if value is None else value != 0


def _judged_targets(nat: NatFacts) -> dict[str, tuple[PublishedTarget, ...]]:
    """Each judged family's published-port targets."""
    if nat.expectations is None:
        return {}
    judged = filter_judged(nat)
    ipv6 = judged_families(nat)[IPV6]
    return {
        family: published_ports(nat.expectations, family, ipv6=ipv6)
        for family in (IPV4, IPV6)
        if judged[family]
    }


def forward_paths(nat: NatFacts) -> tuple[tuple[str, str, str], ...]:
    """(forward_key, state, reason) of forward_verdict for every published port's target of
    the judged families: what the source stores in NatFacts.forward_paths."""
    return tuple(
        (forward_key(family, t.address, t.protocol, t.container_port), v.state, v.reason)
        for family, targets in _judged_targets(nat).items()
        for t in targets
        if (v := forward_verdict(nat, family, t.address, t.container_port, t.protocol, t.bridge))
    )


def port_path_suspects(nat: NatFacts) -> tuple[str, ...]:
    """A published port whose forward path looks blocked (forward_verdict broken: a missing
    ACCEPT or a DROP shadowing it), IP forwarding off while a port of that family is
    published, and a hairpin DNAT without its per-port MASQUERADE: the source reads again
    before the port verdicts may call them broken."""
    found = [
        forwarding_key(family)
        for family, targets in _judged_targets(nat).items()
        if targets and forwarding_on(nat, family) is False
    ]
    paths = nat.forward_paths or forward_paths(nat)
    found += [key for key, state, _ in paths if state == "broken"]
    return (*found, *hairpin_suspects(nat))


# -- the per-port MASQUERADE of hairpin mode (userland-proxy off) ------------------------------
#
# With userland-proxy off Docker writes each port's DNAT without `! -i <bridge>` (so a container
# reaching the host's address is DNAT'ed too) and `-s C -d C -p tcp --dport P -j MASQUERADE`,
# without which a container reaching its own published port sees its own address as the source.
# (20.10 writes that MASQUERADE in both modes; 28 and 29 only in hairpin mode.)


def hairpin_key(family: str, address: str, protocol: str, container_port: int) -> str:
    return f"hairpin/{family}/{address}/{protocol}/{container_port}"


@lru_cache(maxsize=4096)
def _single_host(prefix: str | None) -> str | None:
    """The address of a one-address prefix ("172.17.0.2/32"), parsed once per process."""
    if prefix is None:
        return None
    try:
        net = ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        return None
    return str(net.network_address) if net.num_addresses == 1 else None


def hairpin_dnat(r: NatRule) -> bool:
    """A DNAT that also takes packets coming in from the bridge: hairpin mode's."""
    return r.action == "dnat" and not (r.in_negated and r.in_interface)


@dataclass(frozen=True)
class HairpinIndex:
    """One pass over the nat rules: each DNAT's mode by (family, protocol, host port, container
    address, container port), True when written in hairpin mode, and the per-port MASQUERADEs
    by (family, container address, protocol, container port)."""

    dnats: dict[tuple[str, str, int, str, int], bool]
    masquerades: frozenset[tuple[str, str, str, int]]

    @classmethod
    def of(cls, rules: Iterable[NatRule]) -> HairpinIndex:
        dnats: dict[tuple[str, str, int, str, int], bool] = {}
        masquerades = set()
        for r in rules:
            if r.action == "dnat" and r.protocol and r.dport and r.to_port and r.to_address:
                key = (r.family, r.protocol, r.dport, r.to_address, r.to_port)
                dnats[key] = dnats.get(key, False) or hairpin_dnat(r)
            elif r.action == "masquerade" and r.protocol and r.dport:
                source = _single_host(r.source)
                if source is not None and source == _single_host(r.destination):
                    masquerades.add((r.family, source, r.protocol, r.dport))
        return cls(dnats, frozenset(masquerades))


def hairpin_suspects(nat: NatFacts) -> tuple[str, ...]:
    """Keys of the expected DNATs written in hairpin mode whose per-port MASQUERADE is absent."""
    index = HairpinIndex.of(nat.rules)
    if not any(index.dnats.values()):
        return ()
    found = []
    for e in _expected(nat)[1]:
        for address in e.addresses:
            key = (e.family, e.protocol, e.host_port, address, e.container_port)
            if index.dnats.get(key) and (
                (e.family, address, e.protocol, e.container_port) not in index.masquerades
            ):
                found.append(hairpin_key(e.family, address, e.protocol, e.container_port))
    return tuple(dict.fromkeys(found))
