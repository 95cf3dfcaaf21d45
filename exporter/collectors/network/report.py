"""The network collector's `inspect` sections: the seed's veth.sh output with no exec, `brctl
show`, orphaned veths, and the veths of other owners."""

from __future__ import annotations

from exporter.collectors.containers.judge import inventory
from exporter.collectors.network.facts import NAME, NetworkFacts
from exporter.collectors.network.judge import (
    VETH_DOCKER_SANDBOX,
    VETH_FOREIGN,
    VETH_UNKNOWN,
    VethView,
    bridge_views,
    netns_sharers,
    veth_views,
)
from exporter.report import table
from exporter.snapshot import Snapshot


def sections(snapshot: Snapshot) -> list[str]:
    net = snapshot.current(NAME, NetworkFacts)
    return network_sections(net, snapshot) if net is not None else []


def network_sections(net: NetworkFacts, snapshot: Snapshot) -> list[str]:
    known = inventory(snapshot)
    veths = veth_views(net, known)
    paired = sorted(
        (v for v in veths if v.container), key=lambda v: (v.container or "", v.link.name)
    )
    # The seed's veth.sh line, "vethXXXX is paired with eth0@ifN on <container>", with no exec.
    lines = [
        f"{v.link.name:<15} is paired with {peer_label(v):<12} on {v.container}" for v in paired
    ]
    sharers = [f"{s} shares the network namespace of {o}" for s, o in netns_sharers(net, known)]
    text = "VETH PAIRS\n" + "\n".join(lines or ["(none)"]) + "\n"
    text += "".join(f"{line}\n" for line in sharers)
    sections = [text]
    rows: list[tuple[str, ...]] = []
    for view in bridge_views(net, known):
        stp = {None: "?", True: "yes", False: "no"}[view.link.stp_enabled]
        network = view.network.name if view.network else ""
        ports = [f"{p.name} ({p.port_state or '?'})" for p in view.ports] or [""]
        rows.append((view.link.name, network, stp, ports[0]))
        rows.extend(("", "", "", port) for port in ports[1:])
    sections.append(
        table("BRIDGES", ("BRIDGE NAME", "DOCKER NETWORK", "STP ENABLED", "INTERFACES"), rows)
    )
    sections.append(
        table(
            "ORPHANED VETHS",
            ("INTERFACE", "REASON", "BRIDGE", "PEER"),
            (
                (
                    v.link.name,
                    v.orphan_reason,
                    v.bridge or "-",
                    f"if{v.link.peer_index} in nsid {v.link.peer_nsid}"
                    if v.link.peer_nsid is not None
                    else f"if{v.link.peer_index} on the host",
                )
                for v in veths
                if v.orphan_reason
            ),
        )
    )
    sections.append(
        table(
            "OTHER VETHS (Docker's sandboxes, other runtimes', unknown owners)",
            ("INTERFACE", "STATUS", "BRIDGE", "NAMESPACE HELD BY"),
            (
                (v.link.name, v.status, v.bridge or "-", f"{v.owner_kind} {v.owner}".strip())
                for v in sorted(veths, key=lambda v: (v.status, v.link.name))
                if v.status in (VETH_DOCKER_SANDBOX, VETH_FOREIGN, VETH_UNKNOWN)
            ),
        )
    )
    if net.unreadable_netns:
        sections.append(
            f"{net.unreadable_netns} container network namespaces could not be "
            "opened (needs CAP_SYS_PTRACE): no veth was judged orphaned.\n"
        )
    return sections


def peer_label(veth: VethView) -> str:
    """eth0@if534: the container's interface and, as `ip link` shows it, its peer's ifindex."""
    return f"{veth.container_interface or '?'}@if{veth.link.index}"
