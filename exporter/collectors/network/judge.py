"""The network collector's verdicts: every host veth paired with its container, or judged by
who holds its peer's namespace. Pure: recorded and constructed facts drive these."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from operator import attrgetter
from typing import NamedTuple

from exporter.collectors.containers.judge import Inventory, display_name, inventory_of
from exporter.collectors.network.facts import NetworkFacts
from exporter.memo import last_answer
from exporter.readers.docker_api import (
    ContainerRecord,
    DockerNetwork,
    EngineFacts,
)
from exporter.readers.netlink import Link
from exporter.readers.netns import (
    OWNER_CONTAINER,
    OWNER_DOCKER_SANDBOX,
    OWNER_FOREIGN,
    OWNER_HOST,
    OWNER_NONE,
    OWNER_UNKNOWN,
    NamespaceOwner,
)
from exporter.readers.network import ContainerNetns, PeerLink

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


class NetnsOwner(NamedTuple):
    """A container network namespace and the container that owns it (not a sharer). A
    NamedTuple, as VethView: one a container, made again whenever a namespace came or went."""

    inode: int
    nsid: int | None
    owner: ContainerNetns
    sharers: tuple[ContainerNetns, ...]


_INODE = attrgetter("inode")
_NSID = attrgetter("nsid")
# A NetnsOwner from its fields as one tuple, in C: what NetnsOwner._make does, unwrapped.
_NETNS_OWNER = partial(tuple.__new__, NetnsOwner)

_OWNER_STATUS = {
    OWNER_CONTAINER: VETH_PAIRED,
    OWNER_DOCKER_SANDBOX: VETH_DOCKER_SANDBOX,
    OWNER_UNKNOWN: VETH_UNKNOWN,
    OWNER_HOST: VETH_OTHER,
}


class VethView(NamedTuple):
    """A host veth's verdict. A NamedTuple, not a frozen dataclass: a network write makes one
    per veth after every container start or removal, and a frozen dataclass's __init__ costs
    twice as much (one object.__setattr__ a field)."""

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
        return _OWNER_STATUS.get(self.owner_kind, VETH_FOREIGN)


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
    return _netns_owners(net, inventory.engine.containers if inventory else None)


@last_answer
def owners_of(
    net: NetworkFacts, containers: tuple[ContainerRecord, ...] | None
) -> tuple[NetnsOwner, ...]:
    """netns_owners from the Engine API's container list, kept while neither changed: the
    source's orphan check and both writers ask it of the same facts (the writers' list is the
    containers collector's copy of the source's answer, its containers the same tuple)."""
    return _netns_owners(net, containers)


def _netns_owners(
    net: NetworkFacts, containers: tuple[ContainerRecord, ...] | None
) -> tuple[NetnsOwner, ...]:
    inodes = list(map(_INODE, net.container_netns))
    if len(set(inodes)) == len(inodes):
        # No namespace shared, none seen twice: all but a few hosts, after every container
        # started or removed. Each its own owner, in inode order, made in C (map, zip).
        alone = sorted(net.container_netns, key=_INODE)
        made = zip(map(_INODE, alone), map(_NSID, alone), alone, repeat(()))
        return tuple(map(_NETNS_OWNER, made))
    groups: dict[int, list[ContainerNetns]] = {}
    for netns in net.container_netns:
        groups.setdefault(netns.inode, []).append(netns)
    modes: dict[str, str] | None = None
    owners = []
    for inode, members in sorted(groups.items()):
        if len(members) == 1:  # all but a few: no sharers to sort out
            owner = members[0]
            owners.append(NetnsOwner(inode, owner.nsid, owner, ()))
            continue
        # A namespace shared (or a container seen twice): rare.
        if modes is None:
            modes = {c.id: c.network_mode for c in containers or ()}
        shared = modes
        members.sort(key=lambda m: (shared.get(m.container_id, "").startswith("container:"), m.pid))
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


def veth_views(
    net: NetworkFacts,
    inventory: Inventory | None,
    owners: tuple[NetnsOwner, ...] | None = None,
) -> tuple[VethView, ...]:
    """Every host veth paired with its container, or judged orphaned with a reason.

    Pairing matches (peer nsid, peer ifindex): an ifindex alone repeats in every namespace.
    Nothing is carried over from an earlier sample: nsids and inodes are reused. A veth is
    called orphaned only if it already looked orphaned in the reading taken a moment before
    (`net.earlier_suspects`): libnetwork builds and tears down a pair in steps (both ends on
    the host, then one moved into the container), and a single reading often lands between two.
    owners: netns_owners(net, inventory), when the caller has it already.
    """
    bridges = docker_bridges(inventory, net.links)
    return tuple(
        _judge(
            net,
            inventory,
            bridges.__contains__,
            owners=owners,
            bridge_networks=bridges,
            confirmed=set(net.earlier_suspects),
        )
    )


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
        known = inventory_of(engine)
        bridges = set(docker_bridges(known, net.links)) | set(docker_bridges(None, net.links))
        # Only the veths with a reason are wanted: the paired ones (all but a few) skip their
        # view, as this runs whenever a link or a namespace changed.
        owners = owners_of(net, engine.containers)
        views = _judge(net, known, bridges.__contains__, owners=owners, reasons_only=True)
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
    *,
    networks: tuple[DockerNetwork, ...] | None = None,
    owners: tuple[NetnsOwner, ...] | None = None,
    reasons_only: bool = False,
    bridge_networks: Mapping[str, DockerNetwork | None] | None = None,
    confirmed: Collection[tuple[int, str]] | None = None,
) -> Iterator[VethView]:
    """Each veth with who holds its peer's namespace, and whether it looks orphaned.

    Only what is Docker's is judged: a veth on a Docker bridge, or one into a namespace dockerd
    keeps. A veth into another runtime's namespace off Docker's bridges is foreign, and one
    whose namespace's owner could not be read is unknown: neither is ever called orphaned.
    Sandboxes are judged against the inventory's networks, else against `networks` (None:
    not judged). reasons_only: leave out the veths held by a container whose peer is there
    (never orphaned). bridge_networks: the Docker network behind each bridge, for the views'
    network. confirmed: (ifindex, name) of the veths an earlier reading suspected; with it, an
    orphan reason stands only for these.
    """
    names = inventory.names if inventory else {}
    if inventory is not None:
        networks = inventory.engine.networks
    by_index, peers = _indexes(net.links, net.peers)
    if owners is None:
        owners = netns_owners(net, inventory)
    containers = _by_nsid(owners)
    others = {o.nsid: o for o in net.namespace_owners}
    can_judge = net.unreadable_netns == 0
    # Runs for every veth after every container started or removed, in the source and in the
    # writer: attributes are read once, and views are made positionally (VethView's order).
    for link in net.links:
        if link.kind != "veth":
            continue
        peer_nsid, peer_index = link.peer_nsid, link.peer_index
        peer: PeerLink | None = None
        peer_gone = False
        held: NetnsOwner | None = None
        if peer_nsid is not None:
            if peer_index is not None:
                peer = peers.get((peer_nsid, peer_index))
            peer_gone = peer is not None and peer.name is None and not peer.refused
            held = containers.get(peer_nsid)
            if held is not None and reasons_only and not peer_gone:
                continue  # all but a few veths: the orphan check asks nothing more of them
        master = by_index.get(link.master) if link.master is not None else None
        bridge = master.name if master is not None and master.kind == "bridge" else None
        on_docker_bridge = bridge is not None and is_docker_bridge(bridge)
        reason: str | None = None
        container_id: str | None = None
        if peer_nsid is None:
            # Both ends in the host's namespace: Docker's only if it sits on a Docker bridge.
            kind, owner = OWNER_HOST, ""
            if on_docker_bridge:
                gone = peer_index is not None and peer_index not in by_index
                reason = ORPHAN_PEER_GONE if gone else ORPHAN_NO_CONTAINER
        elif held is not None:
            container_id = held.owner.container_id
            kind, owner = OWNER_CONTAINER, display_name(container_id, names)
            reason = ORPHAN_PEER_GONE if peer_gone else None
        else:
            kind, owner, reason = _judge_other(
                others.get(peer_nsid), networks, on_docker_bridge, peer_gone, can_judge
            )
        if (
            reason is not None
            and confirmed is not None
            and (link.index, link.name) not in confirmed
        ):
            reason = None
        yield VethView(
            link,
            bridge,
            bridge_networks.get(bridge) if bridge and bridge_networks else None,
            container_id,
            owner if container_id else None,  # the container holds its namespace
            peer.name if peer is not None and container_id else None,
            reason,
            kind,
            owner,
        )


@last_answer
def _indexes(
    links: tuple[Link, ...], peers: tuple[PeerLink, ...]
) -> tuple[dict[int, Link], dict[tuple[int, int], PeerLink]]:
    """The links by ifindex and the peers by (nsid, ifindex): made once a reading, not once
    for the source's orphan check and again for the writer's views."""
    return {link.index: link for link in links}, {(p.nsid, p.index): p for p in peers}


@last_answer
def _by_nsid(owners: tuple[NetnsOwner, ...]) -> dict[int, NetnsOwner]:
    """The containers' namespaces by the id the host gives them (owners_of's answer)."""
    return {o.nsid: o for o in owners if o.nsid is not None}


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


def veth_containers(
    net: NetworkFacts,
    inventory: Inventory | None,
    owners: tuple[NetnsOwner, ...] | None = None,
) -> dict[int, str]:
    """ifindex -> container name of every host veth whose peer is in a container's namespace:
    VethView.container without judging anything, for the writer of the veths' counters.
    owners: netns_owners(net, inventory), when the caller has it already."""
    names = inventory.names if inventory else {}
    if owners is None:
        owners = netns_owners(net, inventory)
    held = _by_nsid(owners)  # the views' map of the same owners, not made again
    return {
        link.index: display_name(held[link.peer_nsid].owner.container_id, names)
        for link in net.links
        if link.kind == "veth" and link.peer_nsid is not None and link.peer_nsid in held
    }


def netns_sharers(
    net: NetworkFacts,
    inventory: Inventory | None,
    owners: tuple[NetnsOwner, ...] | None = None,
) -> tuple[tuple[str, str], ...]:
    """(sharer, owner) container names for every `--network=container:X` pair; owners:
    netns_owners(net, inventory), when the caller has it already."""
    names = inventory.names if inventory else {}
    return tuple(
        (display_name(s.container_id, names), display_name(o.owner.container_id, names))
        for o in (netns_owners(net, inventory) if owners is None else owners)
        for s in o.sharers
    )
