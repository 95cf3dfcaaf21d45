"""Pure joins between what the readers saw. No I/O: recorded facts drive these in unit tests."""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from exporter.facts import (
    CONTAINER_STATES,
    DOCKER_RUNTIME_NAMESPACE,
    OWNER_CONTAINER,
    OWNER_DOCKER_SANDBOX,
    OWNER_FOREIGN,
    OWNER_HOST,
    OWNER_NONE,
    OWNER_UNKNOWN,
    ContainerNetns,
    ContainerRecord,
    DaemonConfigFacts,
    DockerNetwork,
    EngineFacts,
    FirewallBackend,
    ImageFacts,
    LayerFacts,
    LayersFacts,
    Link,
    NamespaceLink,
    NamespaceOwner,
    NatExpectations,
    NatFacts,
    NatRule,
    NetworkFacts,
    PeerLink,
    ProcessFacts,
    ShimFacts,
)
from exporter.readers.daemon_config import KNOWN_KEYS, RELOADABLE


@dataclass(frozen=True)
class Inventory:
    """The Engine API's last good container list and when it was taken."""

    engine: EngineFacts
    taken_at: float

    @property
    def names(self) -> dict[str, str]:
        """Container id -> name."""
        return {c.id: c.name for c in self.engine.containers}


@dataclass(frozen=True)
class ShimVerdict:
    shim: ShimFacts
    container: str
    # None when the inventory cannot tell: it was never taken, or predates the shim.
    orphaned: bool | None


@dataclass(frozen=True)
class ContainerProcesses:
    """A container's processes as /proc shows them, named from the Engine API when it can be."""

    container: str
    container_id: str
    shim: ShimFacts
    shared_with_host: tuple[tuple[str, bool], ...]


def display_name(container_id: str, names: Mapping[str, str]) -> str:
    """The container's name; its short id while the Engine API has not told us the name."""
    return names.get(container_id) or container_id[:12]


def shared_with_host(
    container: tuple[NamespaceLink, ...], host: tuple[NamespaceLink, ...]
) -> tuple[tuple[str, bool], ...]:
    """Per namespace kind both sides could read: is it the host's own namespace?"""
    host_inodes = {link.kind: link.inode for link in host}
    return tuple(
        (link.kind, host_inodes[link.kind] == link.inode)
        for link in container
        if link.kind in host_inodes
    )


def docker_shims(procs: ProcessFacts) -> tuple[ShimFacts, ...]:
    return tuple(s for s in procs.shims if s.runtime_namespace in ("", DOCKER_RUNTIME_NAMESPACE))


def shim_verdicts(procs: ProcessFacts, inventory: Inventory | None) -> tuple[ShimVerdict, ...]:
    """Each Docker shim with its container's name and whether it is orphaned.

    A shim is orphaned when an inventory taken after the shim started does not list its
    container. The two readers sample at different moments, so a shim newer than the inventory
    is left undecided rather than called orphaned for one interval.
    """
    names = inventory.names if inventory else {}
    verdicts = []
    for shim in docker_shims(procs):
        orphaned: bool | None = None
        if inventory is not None and shim.shim_start_time < inventory.taken_at:
            orphaned = shim.container_id not in names
        verdicts.append(ShimVerdict(shim, display_name(shim.container_id, names), orphaned))
    return tuple(verdicts)


def container_processes(
    procs: ProcessFacts, inventory: Inventory | None
) -> tuple[ContainerProcesses, ...]:
    """Per container with a running PID 1: its processes and namespaces.

    While the inventory predates a new container its series wait one interval rather than
    appear under the short id and then change label to the name.
    """
    known = inventory.names.keys() if inventory else set()
    return tuple(
        ContainerProcesses(
            container=v.container,
            container_id=v.shim.container_id,
            shim=v.shim,
            shared_with_host=shared_with_host(v.shim.namespaces, procs.host_namespaces),
        )
        for v in shim_verdicts(procs, inventory)
        if v.shim.pid1 is not None
        and (inventory is None or v.shim.container_id in known or v.orphaned)
    )


def containers_by_state(engine: EngineFacts) -> dict[str, int]:
    counts = Counter(c.state for c in engine.containers)
    return {state: counts.get(state, 0) for state in (*CONTAINER_STATES, *sorted(counts))}


# -- network --------------------------------------------------------------------------------

ORPHAN_PEER_GONE = "peer_gone"
ORPHAN_NO_CONTAINER = "no_container"
ORPHAN_STALE_SANDBOX = "stale_sandbox"

# What docker_host_veths counts, by what stands behind each host veth.
VETH_PAIRED = "paired"  # a Docker container
VETH_ORPHANED = "orphaned"  # Docker's, with nothing of Docker's behind it any more
VETH_DOCKER_SANDBOX = "docker_sandbox"  # a namespace dockerd keeps that a network justifies
VETH_FOREIGN = "foreign"  # another runtime's or tool's: reported, never judged
VETH_UNKNOWN = "unknown"  # its namespace's owner could not be read: never judged
VETH_OTHER = "other"  # both ends on the host, not on a Docker bridge
VETH_STATUSES = (
    VETH_PAIRED,
    VETH_ORPHANED,
    VETH_DOCKER_SANDBOX,
    VETH_FOREIGN,
    VETH_UNKNOWN,
    VETH_OTHER,
)

# libnetwork's names for bridges it made, for when the Engine API has not answered yet.
_DOCKER_BRIDGE_NAME = re.compile(r"^(docker0|docker_gwbridge|br-[0-9a-f]{12})$")
# The files dockerd keeps namespaces under in <exec-root>/netns/, and what justifies each:
# a container's sandbox (its id's first 12 digits), the load balancer of a network (lb_<id>),
# an overlay network's own namespace (<n>-<id>).
_CONTAINER_SANDBOX = re.compile(r"^[0-9a-f]{12}$")
_NETWORK_SANDBOX = re.compile(r"^(?:lb_|\d+-)([0-9a-z]+)$")
INGRESS_SANDBOX = "ingress_sbox"


@dataclass(frozen=True)
class NetnsOwner:
    """A container network namespace and the container that owns it (not a sharer)."""

    inode: int
    nsid: int | None
    owner: ContainerNetns
    sharers: tuple[ContainerNetns, ...]


@dataclass(frozen=True)
class VethView:
    link: Link
    bridge: str | None
    network: DockerNetwork | None
    container_id: str | None
    container: str | None
    container_interface: str | None
    # None: healthy or not Docker's to judge; else why it is orphaned.
    orphan_reason: str | None
    # Who holds the namespace its peer is in (facts.OWNER_*), and by what name.
    owner_kind: str = OWNER_NONE
    owner: str = ""

    @property
    def status(self) -> str:
        if self.orphan_reason is not None:
            return VETH_ORPHANED
        return {
            OWNER_CONTAINER: VETH_PAIRED,
            OWNER_DOCKER_SANDBOX: VETH_DOCKER_SANDBOX,
            OWNER_UNKNOWN: VETH_UNKNOWN,
            OWNER_HOST: VETH_OTHER,
        }.get(self.owner_kind, VETH_FOREIGN)


@dataclass(frozen=True)
class BridgeView:
    link: Link
    network: DockerNetwork | None
    ports: tuple[Link, ...]


def netns_owners(net: NetworkFacts, inventory: Inventory | None) -> tuple[NetnsOwner, ...]:
    """Group containers by network namespace; `--network=container:X` joins X's.

    The owner is the container not in network mode container:…; without a container list to
    tell, the one whose process has the lowest pid.
    """
    modes = {c.id: c.network_mode for c in inventory.engine.containers} if inventory else {}
    groups: dict[int, list[ContainerNetns]] = {}
    for netns in net.container_netns:
        groups.setdefault(netns.inode, []).append(netns)
    owners = []
    for inode, members in sorted(groups.items()):
        members.sort(key=lambda m: (modes.get(m.container_id, "").startswith("container:"), m.pid))
        owner = members[0]
        sharers = tuple(m for m in members[1:] if m.container_id != owner.container_id)
        owners.append(NetnsOwner(inode, owner.nsid, owner, sharers))
    return tuple(owners)


def docker_bridges(
    inventory: Inventory | None, links: tuple[Link, ...]
) -> dict[str, DockerNetwork | None]:
    """Bridge name -> the Docker network behind it, for every bridge Docker owns."""
    if inventory is not None:
        return {n.bridge: n for n in inventory.engine.networks if n.bridge}
    return {
        link.name: None
        for link in links
        if link.kind == "bridge" and _DOCKER_BRIDGE_NAME.match(link.name)
    }


def sandbox_justified(name: str, networks: Iterable[DockerNetwork]) -> bool | None:
    """Does a Docker network still justify the namespace dockerd keeps as <netns>/name?

    ingress_sbox stands for swarm's ingress network, lb_<id> and <n>-<id> for the network
    whose id starts so; a container's sandbox with no container process in it is left over.
    None for a name this does not know: not judged.
    """
    if name == INGRESS_SANDBOX:
        return any(n.ingress for n in networks)
    if (match := _NETWORK_SANDBOX.match(name)) is not None:
        return any(n.id.startswith(match[1]) for n in networks)
    if _CONTAINER_SANDBOX.match(name):
        return False
    return None


def veth_views(net: NetworkFacts, inventory: Inventory | None) -> tuple[VethView, ...]:
    """Every host veth paired with its container, or judged orphaned with a reason.

    Pairing matches (peer nsid, peer ifindex): an ifindex alone repeats in every namespace.
    Nothing is carried over from an earlier sample: nsids and inodes are reused. A veth is
    called orphaned only if it already looked orphaned in the reading taken a moment before
    (`net.earlier_suspects`): libnetwork builds and tears down a pair in steps (both ends on
    the host, then one moved into the container), and a single reading often lands between two.
    """
    bridges = docker_bridges(inventory, net.links)
    confirmed = set(net.earlier_suspects)
    views = []
    for judged in _judge(net, inventory, lambda bridge: bridge in bridges):
        reason = judged.orphan_reason
        if reason and (judged.link.index, judged.link.name) not in confirmed:
            reason = None
        network = bridges.get(judged.bridge) if judged.bridge else None
        views.append(replace(judged, orphan_reason=reason, network=network))
    return tuple(views)


def orphan_suspects(
    net: NetworkFacts, engine: EngineFacts | None = None
) -> tuple[tuple[int, str], ...]:
    """(ifindex, name) of every veth that looks orphaned in this reading, taken before the
    Engine API is asked: the reader looks again at these before any is reported.

    engine is the Engine API's last answer, if there is one: its bridges (and any named the
    way libnetwork names them, for a network made since) are Docker's, and its networks judge
    dockerd's sandboxes. Without one, every bridge may be Docker's (a network may name its
    bridge anything) except one that holds another runtime's pods and no container, and every
    sandbox is looked at again.
    """
    if engine is not None:
        known = Inventory(engine=engine, taken_at=0.0)
        bridges = set(docker_bridges(known, net.links)) | set(docker_bridges(None, net.links))
        views = _judge(net, known, bridges.__contains__)
    else:
        foreign_only = _foreign_bridges(_judge(net, None, lambda bridge: True))
        views = _judge(net, None, lambda bridge: bridge not in foreign_only, networks=())
    return tuple((v.link.index, v.link.name) for v in views if v.orphan_reason)


def _foreign_bridges(views: Iterable[VethView]) -> set[str]:
    kinds: dict[str, set[str]] = {}
    for view in views:
        if view.bridge is not None:
            kinds.setdefault(view.bridge, set()).add(view.owner_kind)
    return {
        bridge
        for bridge, seen in kinds.items()
        if OWNER_FOREIGN in seen
        and OWNER_CONTAINER not in seen
        and not _DOCKER_BRIDGE_NAME.match(bridge)
    }


def _judge(
    net: NetworkFacts,
    inventory: Inventory | None,
    is_docker_bridge: Callable[[str], bool],
    networks: tuple[DockerNetwork, ...] | None = None,
) -> Iterator[VethView]:
    """Each veth with who holds its peer's namespace, and whether it looks orphaned.

    Only what is Docker's is judged: a veth on a Docker bridge, or one into a namespace dockerd
    keeps. A veth into another runtime's namespace off Docker's bridges is foreign, and one
    whose namespace's owner could not be read is unknown: neither is ever called orphaned.
    Sandboxes are judged against the inventory's networks, else against `networks` (None:
    not judged).
    """
    names = inventory.names if inventory else {}
    if inventory is not None:
        networks = inventory.engine.networks
    by_index = {link.index: link for link in net.links}
    containers = {o.nsid: o for o in netns_owners(net, inventory) if o.nsid is not None}
    others = {o.nsid: o for o in net.namespace_owners}
    peers = {(p.nsid, p.index): p for p in net.peers}
    can_judge = net.unreadable_netns == 0
    for link in net.links:
        if link.kind != "veth":
            continue
        master = by_index.get(link.master) if link.master is not None else None
        bridge = master.name if master is not None and master.kind == "bridge" else None
        on_docker_bridge = bridge is not None and is_docker_bridge(bridge)
        reason: str | None = None
        container_id: str | None = None
        peer: PeerLink | None = None
        if link.peer_nsid is None:
            # Both ends in the host's namespace: Docker's only if it sits on a Docker bridge.
            kind, owner = OWNER_HOST, ""
            if on_docker_bridge:
                gone = link.peer_index is not None and link.peer_index not in by_index
                reason = ORPHAN_PEER_GONE if gone else ORPHAN_NO_CONTAINER
        else:
            if link.peer_index is not None:
                peer = peers.get((link.peer_nsid, link.peer_index))
            peer_gone = peer is not None and peer.name is None and not peer.refused
            held = containers.get(link.peer_nsid)
            if held is not None:
                container_id = held.owner.container_id
                kind, owner = OWNER_CONTAINER, display_name(container_id, names)
                reason = ORPHAN_PEER_GONE if peer_gone else None
            else:
                kind, owner, reason = _judge_other(
                    others.get(link.peer_nsid), networks, on_docker_bridge, peer_gone, can_judge
                )
        yield VethView(
            link=link,
            bridge=bridge,
            network=None,
            container_id=container_id,
            container=display_name(container_id, names) if container_id else None,
            container_interface=peer.name if peer is not None and container_id else None,
            orphan_reason=reason,
            owner_kind=kind,
            owner=owner,
        )


def _judge_other(
    other: NamespaceOwner | None,
    networks: tuple[DockerNetwork, ...] | None,
    on_docker_bridge: bool,
    peer_gone: bool,
    can_judge: bool,
) -> tuple[str, str, str | None]:
    """(owner kind, owner, orphan reason) of a veth into a namespace no container is in."""
    if other is None:
        # Not looked up (a recording from before owners were read): nobody known.
        kind, owner = OWNER_NONE, ""
    else:
        kind, owner = other.kind, other.name
    if kind == OWNER_DOCKER_SANDBOX:
        if peer_gone:
            return kind, owner, ORPHAN_PEER_GONE
        justified = sandbox_justified(owner, networks) if networks is not None else None
        if justified is False and can_judge:
            stale = _CONTAINER_SANDBOX.match(owner) is None
            return kind, owner, ORPHAN_STALE_SANDBOX if stale else ORPHAN_NO_CONTAINER
    elif kind in (OWNER_FOREIGN, OWNER_NONE) and on_docker_bridge and can_judge:
        return kind, owner, ORPHAN_PEER_GONE if peer_gone else ORPHAN_NO_CONTAINER
    return kind, owner, None


def bridge_views(net: NetworkFacts, inventory: Inventory | None) -> tuple[BridgeView, ...]:
    bridges = docker_bridges(inventory, net.links)
    ports: dict[int, list[Link]] = {}
    for link in net.links:
        if link.master is not None:
            ports.setdefault(link.master, []).append(link)
    return tuple(
        BridgeView(
            link=link,
            network=bridges.get(link.name),
            ports=tuple(sorted(ports.get(link.index, []), key=lambda p: p.name)),
        )
        for link in sorted(net.links, key=lambda link: link.name)
        if link.kind == "bridge"
    )


def netns_sharers(net: NetworkFacts, inventory: Inventory | None) -> tuple[tuple[str, str], ...]:
    """(sharer, owner) container names for every `--network=container:X` pair."""
    names = inventory.names if inventory else {}
    return tuple(
        (display_name(s.container_id, names), display_name(o.owner.container_id, names))
        for o in netns_owners(net, inventory)
        for s in o.sharers
    )


# -- nat ------------------------------------------------------------------------------------


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


# -- daemon configuration -------------------------------------------------------------------

_LOOPBACK_REGISTRIES = "127.0.0.0/8"  # dockerd always trusts it; not the file's doing


@dataclass(frozen=True)
class KeyVerdict:
    """One key of daemon.json against the running daemon.

    verdict: in_sync, reload (a SIGHUP applies it), restart (only a restart does), conflict (also
    a command-line flag: dockerd will refuse to start), unknown_key (dockerd will refuse to
    start), or not_comparable (the running daemon does not say).
    """

    key: str
    file_value: str
    running_value: str | None
    verdict: str
    applies_on: str  # reload or restart

    @property
    def drift(self) -> bool | None:
        if self.verdict in ("not_comparable", "unknown_key", "conflict"):
            return None
        return self.verdict != "in_sync"


def _as_set(value: Any) -> set[str]:
    return {str(v).rstrip("/") for v in value} if isinstance(value, list) else set()


Comparison = tuple[Any, bool] | None  # (what the daemon runs with, whether the file agrees)


def _field(name: str) -> Callable[[Any, dict[str, Any]], Comparison]:
    return lambda value, running: (running.get(name), value == running.get(name))


def _data_root(value: Any, running: dict[str, Any]) -> Comparison:
    root = str(running.get("DockerRootDir") or "")
    return root, str(value).rstrip("/") == root.rstrip("/")


def _labels(value: Any, running: dict[str, Any]) -> Comparison:
    labels = sorted(running.get("Labels") or [])
    return labels, isinstance(value, list) and sorted(map(str, value)) == labels


def _insecure_registries(value: Any, running: dict[str, Any]) -> Comparison:
    runs = set(running.get("InsecureRegistryCIDRs") or []) | set(
        running.get("InsecureRegistries") or []
    )
    runs -= {_LOOPBACK_REGISTRIES}
    return sorted(runs), _as_set(value) - {_LOOPBACK_REGISTRIES} == runs


def _mirrors(value: Any, running: dict[str, Any]) -> Comparison:
    mirrors = _as_set(running.get("Mirrors") or [])
    return sorted(mirrors), _as_set(value) == mirrors


def _runtimes(value: Any, running: dict[str, Any]) -> Comparison:
    runtimes = set(running.get("Runtimes") or [])
    return sorted(runtimes), isinstance(value, dict) and set(value) <= runtimes


def _exec_opts(value: Any, running: dict[str, Any]) -> Comparison:
    drivers = [
        str(v).split("=", 1)[1]
        for v in (value if isinstance(value, list) else [])
        if str(v).startswith("native.cgroupdriver=")
    ]
    if not drivers:
        return None
    return running.get("CgroupDriver"), drivers[-1] == running.get("CgroupDriver")


def _userns_remap(value: Any, running: dict[str, Any]) -> Comparison:
    remapped = any("name=userns" in o for o in running.get("SecurityOptions") or [])
    return remapped, bool(value) == remapped


# What GET /info can confirm, key by key.
_FROM_INFO: dict[str, Callable[[Any, dict[str, Any]], Comparison]] = {
    "debug": _field("Debug"),
    "live-restore": _field("LiveRestoreEnabled"),
    "storage-driver": _field("Driver"),
    "log-driver": _field("LoggingDriver"),
    "default-runtime": _field("DefaultRuntime"),
    "experimental": _field("ExperimentalBuild"),
    "data-root": _data_root,
    "labels": _labels,
    "insecure-registries": _insecure_registries,
    "registry-mirrors": _mirrors,
    "runtimes": _runtimes,
    "exec-opts": _exec_opts,
    "userns-remap": _userns_remap,
}


def _running_value(
    key: str, value: Any, running: dict[str, Any], reloaded: dict[str, str] | None
) -> Comparison:
    if key in _FROM_INFO:
        return _FROM_INFO[key](value, running)
    if reloaded is not None and key in reloaded:
        # The last reload event carries the values it applied.
        return reloaded[key], str(value).lower() == reloaded[key].lower()
    return None


def config_verdicts(daemon: DaemonConfigFacts) -> tuple[KeyVerdict, ...]:
    if daemon.file_error is not None:
        return ()
    running = json.loads(daemon.info) if daemon.info else None
    reloaded = json.loads(daemon.reloads[-1][1]) if daemon.reloads else None
    flags = set(daemon.flag_keys)
    verdicts = []
    for key, encoded in daemon.file_values:
        applies_on = "reload" if key in RELOADABLE else "restart"
        if key not in KNOWN_KEYS:
            verdicts.append(KeyVerdict(key, encoded, None, "unknown_key", applies_on))
            continue
        if key in flags:
            verdicts.append(KeyVerdict(key, encoded, None, "conflict", applies_on))
            continue
        compared = _running_value(key, json.loads(encoded), running, reloaded) if running else None
        if compared is None:
            verdicts.append(KeyVerdict(key, encoded, None, "not_comparable", applies_on))
            continue
        value, agrees = compared
        verdicts.append(
            KeyVerdict(
                key,
                encoded,
                json.dumps(value, sort_keys=True),
                "in_sync" if agrees else applies_on,
                applies_on,
            )
        )
    return tuple(verdicts)


def last_load_time(daemon: DaemonConfigFacts) -> float | None:
    """When dockerd last read its file: its start, or its last reload."""
    times = [t for t in (daemon.start_time, *(t for t, _ in daemon.reloads)) if t is not None]
    return max(times) if times else None


def config_file_valid(daemon: DaemonConfigFacts) -> bool:
    """Would dockerd start with this file? Not with a broken file, unknown keys, a key also
    given as a flag, or an explicit --config-file that is missing."""
    if daemon.file_error is not None:
        return False
    if daemon.config_path_explicit and not daemon.file_present:
        return False
    return all(v.verdict not in ("unknown_key", "conflict") for v in config_verdicts(daemon))


# -- image layers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerView:
    layer: LayerFacts
    images: tuple[str, ...]  # ids of the images holding it
    containers: int  # containers whose image holds it

    @property
    def saved_bytes(self) -> int:
        """What sharing this layer saves: every image but one would otherwise hold a copy."""
        return self.layer.size * max(len(self.images) - 1, 0)


def layer_views(facts: LayersFacts) -> tuple[LayerView, ...]:
    """Every layer with the images that share it, most bytes saved first."""
    holders: dict[str, list[ImageFacts]] = {}
    for image in facts.images:
        for chain_id in image.layers:
            holders.setdefault(chain_id, []).append(image)
    views = [
        LayerView(
            layer=layer,
            images=tuple(i.id for i in holders.get(layer.chain_id, [])),
            containers=sum(i.containers for i in holders.get(layer.chain_id, [])),
        )
        for layer in facts.layers
    ]
    return tuple(sorted(views, key=lambda v: (-v.saved_bytes, -v.layer.size, v.layer.chain_id)))


@dataclass(frozen=True)
class SharingTotals:
    without_sharing: int  # every image holding its own copy of every layer
    on_disk: int  # each layer once, as the engine counts it

    @property
    def saved(self) -> int:
        return max(self.without_sharing - self.on_disk, 0)


def sharing_totals(facts: LayersFacts) -> SharingTotals:
    return SharingTotals(
        without_sharing=sum(image.size for image in facts.images), on_disk=facts.layers_size
    )
