"""The network collector's metric families and writer."""

from __future__ import annotations

from collections.abc import Iterable

from exporter.collectors.containers.judge import Inventory, inventory
from exporter.collectors.network.facts import NAME, LinkCounters, NetworkCounters, NetworkFacts
from exporter.collectors.network.judge import (
    ORPHAN_NO_CONTAINER,
    ORPHAN_PEER_GONE,
    ORPHAN_STALE_SANDBOX,
    VETH_PAIRED,
    VETH_STATUSES,
    BridgeView,
    VethView,
    bridge_views,
    netns_sharers,
    owners_of,
    veth_containers,
    veth_views,
)
from exporter.memo import last_answer
from exporter.metrics import Families, declare
from exporter.readers.netlink import PORT_STATES
from exporter.selfmetrics import PRIVILEGE_MISSING
from exporter.snapshot import Snapshot

VETH_INFO = declare(
    "veth_info",
    "gauge",
    "A host veth paired with a container's interface (matched on peer netns id and ifindex, "
    "no exec), with the bridge and Docker network it is on; 1.",
    ("interface", "container", "container_interface", "bridge", "network"),
    collector=NAME,
)
VETH_ORPHANED = declare(
    "veth_orphaned",
    "gauge",
    f"A host veth of Docker's (on a Docker bridge, or into a namespace dockerd keeps) with "
    f"nothing of Docker's behind it any more; 1. reason: {ORPHAN_NO_CONTAINER} (its peer is in "
    f"a namespace no running container holds, or both ends are on the host), "
    f"{ORPHAN_STALE_SANDBOX} (its peer is in a sandbox dockerd keeps for a network that is "
    f"gone, such as ingress_sbox after leaving the swarm) or {ORPHAN_PEER_GONE} (its peer "
    f"link no longer exists). Veths of other runtimes are never judged.",
    ("interface", "reason", "bridge"),
    collector=NAME,
)
VETH_NAMESPACE = declare(
    "veth_peer_namespace_info",
    "gauge",
    "Who holds the network namespace the far end of a host veth is in, from the kernel's mount "
    "tables and processes (never from names); 1. owner_kind: container (owner: its name), "
    "docker_sandbox (a namespace dockerd keeps under its exec-root's netns/, owner: the file's "
    "name, such as ingress_sbox), foreign (another runtime's or tool's: owner: the bind "
    "mount's path such as /run/netns/cni-..., or process:<comm>), none (nothing visible holds "
    "it), unknown (could not be read; owner: why), host (both ends on the host).",
    ("interface", "bridge", "owner_kind", "owner"),
    collector=NAME,
)
VETHS = declare(
    "veths",
    "gauge",
    "Host veths by status: paired (with a container), orphaned, docker_sandbox (into a "
    "namespace dockerd keeps that a network still justifies), foreign (another runtime's: "
    "never judged), unknown (its namespace's owner could not be read: never judged), other "
    "(both ends on the host, off Docker's bridges).",
    ("status",),
    collector=NAME,
)
_TRAFFIC = {
    ("receive", "bytes"): "rx_bytes",
    ("receive", "packets"): "rx_packets",
    ("receive", "drops"): "rx_dropped",
    ("receive", "errors"): "rx_errors",
    ("transmit", "bytes"): "tx_bytes",
    ("transmit", "packets"): "tx_packets",
    ("transmit", "drops"): "tx_dropped",
    ("transmit", "errors"): "tx_errors",
}
_VERB = {"receive": ("received", "sent by"), "transmit": ("transmitted", "sent to")}
TRAFFIC = {
    field: declare(
        f"veth_{direction}_{unit}",
        "counter",
        f"{unit.capitalize()} the host side of the veth {_VERB[direction][0]} "
        f"({_VERB[direction][1]} the container), as the host's kernel counts them: a process in "
        "the container cannot fake them.",
        ("interface", "container"),
        collector=NAME,
    )
    for (direction, unit), field in _TRAFFIC.items()
}
BRIDGE_INFO = declare(
    "bridge_info",
    "gauge",
    "A Linux bridge on the host and the Docker network it backs (empty when Docker does not own "
    "it), as `brctl show` lists them; 1.",
    ("bridge", "network", "network_id", "driver", "subnet", "stp"),
    collector=NAME,
)
BRIDGE_PORTS = declare(
    "bridge_ports",
    "gauge",
    "Interfaces attached to the bridge.",
    ("bridge",),
    collector=NAME,
)
BRIDGE_PORT_STATE = declare(
    "bridge_port_state",
    "gauge",
    f"A bridge port's STP state ({', '.join(PORT_STATES)}); 1 for the current one.",
    ("bridge", "port", "state"),
    collector=NAME,
)
SHARED_NETNS = declare(
    "container_network_shared_with",
    "gauge",
    "The container runs in another container's network namespace (--network=container:X); "
    "owner's veth is its veth; 1.",
    ("container", "owner"),
    collector=NAME,
)
NETNS_UNREADABLE = declare(
    "network_namespaces_unreadable",
    "gauge",
    "Containers whose /proc/PID/ns/net could not be opened (needs CAP_SYS_PTRACE); while "
    "non-zero no veth is judged orphaned for lack of a container behind it.",
    (),
    collector=NAME,
)


def write(snapshot: Snapshot, out: Families) -> None:
    """The verdict families: re-run only when the facts (or the container list) changed."""
    net = snapshot.current(NAME, NetworkFacts)
    if net is None:
        return
    known = inventory(snapshot)
    owners = owners_of(net, known.engine.containers if known else None)  # the counters' too
    write_veths(veth_views(net, known, owners), out)
    write_bridges(bridge_views(net, known), out)
    for sharer, owner in netns_sharers(net, known, owners):
        out.add(SHARED_NETNS, 1, sharer, owner)
    out.add(NETNS_UNREADABLE, net.unreadable_netns)
    if net.unreadable_netns:
        out.add(PRIVILEGE_MISSING, 1, NAME, "CAP_SYS_PTRACE")
    if any(peer.refused for peer in net.peers):
        out.add(PRIVILEGE_MISSING, 1, NAME, "CAP_NET_ADMIN")


def write_veths(veths: Iterable[VethView], out: Families) -> None:
    status = dict.fromkeys(VETH_STATUSES, 0)
    keys = []
    for veth in veths:
        status[veth.status] += 1
        keys.append(_veth_series_key(veth))
    # Formatted again only for a veth whose series changed (Families.blocks_of): a container
    # started or removed re-runs this writer for every veth.
    out.blocks_of(keys, _veth_series)
    for key, count in status.items():
        out.add(VETHS, count, key)


# What one veth's verdict series say: name, bridge, orphan reason, paired container (None when
# not paired), its interface and network, the holder's kind and name.
_VethSeries = tuple[str, str, str | None, str | None, str, str, str, str]


def _veth_series_key(veth: VethView) -> _VethSeries:
    paired = veth.status == VETH_PAIRED and veth.orphan_reason is None
    return (
        veth.link.name,
        veth.bridge or "",
        veth.orphan_reason,
        veth.container if paired else None,
        veth.container_interface or "",
        veth.network.name if veth.network else "",
        veth.owner_kind,
        veth.owner,
    )


def _veth_series(key: _VethSeries, out: Families) -> None:
    name, bridge, orphan_reason, container, interface, network, owner_kind, owner = key
    if orphan_reason is not None:
        out.add(VETH_ORPHANED, 1, name, orphan_reason, bridge)
    elif container is not None:
        out.add(VETH_INFO, 1, name, container, interface, bridge, network)
    out.add(VETH_NAMESPACE, 1, name, bridge, owner_kind, owner)


def write_counters(snapshot: Snapshot, out: Families) -> None:
    """The veths' traffic, from the counters read every run; a recording made before counters
    were kept apart carries them in its links."""
    net = snapshot.current(NAME, NetworkFacts)
    if net is None:
        return
    read = snapshot.counters(NAME, NetworkCounters)
    counters = read.by_index() if read is not None else {}
    known = inventory(snapshot)
    containers = _veth_containers(net, known)
    keys = []
    for link in net.links:
        if link.kind != "veth":
            continue
        counted = counters.get(link.index, link.counters)
        if counted is not None:
            keys.append((link.name, containers.get(link.index, ""), counted))
    # Formatted again only for a veth whose counters (or names) moved.
    out.blocks_of(keys, _traffic)


@last_answer
def _veth_containers(net: NetworkFacts, known: Inventory | None) -> dict[int, str]:
    """veth_containers: the counters' writer runs every time they move. known is the same
    object while the container list is (containers.judge.inventory)."""
    containers = known.engine.containers if known else None
    return veth_containers(net, known, owners_of(net, containers))


def _traffic(key: tuple[str, str, LinkCounters], out: Families) -> None:
    name, container, counted = key
    for field, spec in TRAFFIC.items():
        out.add(spec, getattr(counted, field), name, container)


def write_bridges(bridges: Iterable[BridgeView], out: Families) -> None:
    ports: list[tuple[str, str, str]] = []
    for view in bridges:
        n = view.network
        stp = {None: "unknown", True: "enabled", False: "disabled"}[view.link.stp_enabled]
        out.add(
            BRIDGE_INFO,
            1,
            view.link.name,
            n.name if n else "",
            n.id[:12] if n else "",
            n.driver if n else "",
            ",".join(n.subnets) if n else "",
            stp,
        )
        out.add(BRIDGE_PORTS, len(view.ports), view.link.name)
        ports.extend(
            (view.link.name, port.name, port.port_state or "unknown") for port in view.ports
        )
    # A block a port, not a bridge: docker0 has a port per container, and one started or
    # removed formats one line again, not 250.
    out.blocks_of(ports, _port_state)


def _port_state(key: tuple[str, str, str], out: Families) -> None:
    bridge, port, state = key
    out.add(BRIDGE_PORT_STATE, 1, bridge, port, state)
