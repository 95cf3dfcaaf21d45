"""The nat collector's verdicts: the MASQUERADE and DNAT rules Docker's networks and published
ports need, in which family, and which are missing. Pure: recorded facts drive these."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from exporter.collectors.nat.facts import NatExpectations, NatFacts
from exporter.readers.docker_api import ContainerRecord, DockerNetwork
from exporter.readers.nat_rules import NatRule
from exporter.readers.netfilter_base import FirewallBackend

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
    return nat_judged(nat.backends, nat.expectations)[IPV4]


def nat_judged(
    backends: tuple[FirewallBackend, ...], expectations: NatExpectations | None
) -> dict[str, bool]:
    """Whether missing-rule verdicts are given for IPv4 and for IPv6, from a reading's backends
    and the Engine API's view: IPv4 with every backend read, the view, and Docker managing a
    firewall; IPv6 also needs Docker managing IPv6 NAT (a host without IPv6 rules is not
    judged)."""
    ipv4 = (
        expectations is not None
        and all(b.readable for b in backends)
        and docker_firewall(backends) != ("none",)
    )
    return {IPV4: ipv4, IPV6: ipv4 and docker_manages_ipv6_nat(backends)}


def judged_families(nat: NatFacts) -> dict[str, bool]:
    """nat_judged for this collector's facts."""
    return nat_judged(nat.backends, nat.expectations)


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


def unmet_or_hairpin(nat: NatFacts) -> tuple[str, ...]:
    """What nat's source reads again before calling it missing or broken: its unmet
    expectations, and the hairpin DNATs without their per-port MASQUERADE (the port verdicts')."""
    return unmet_expectations(nat) + hairpin_suspects(nat)


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
