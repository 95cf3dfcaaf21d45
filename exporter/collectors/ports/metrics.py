"""The ports collector's metric families and writer: one verdict per published port, joined
from this collector's facts and the nat, firewall, network and daemon collectors'."""

from __future__ import annotations

from exporter.collectors.firewall.facts import FirewallFacts
from exporter.collectors.nat.facts import NatFacts
from exporter.collectors.network.facts import NetworkFacts
from exporter.collectors.ports.facts import NAME, PortsFacts
from exporter.collectors.ports.judge import BROKEN, OK, RESTRICTED, UNKNOWN, port_verdicts
from exporter.metrics import Families, declare
from exporter.selfmetrics import PRIVILEGE_MISSING
from exporter.snapshot import Snapshot

PORT_LABELS = ("container", "host_address", "host_port", "protocol", "container_port")

PORT_OK = declare(
    "published_port_ok",
    "gauge",
    "1 when every hop on the paths a running container's published port's connections take "
    "(docs/port-paths.md: by its address and userland-proxy) is whole: DNAT, FORWARD accept "
    "and IP forwarding for forwarded traffic, the container's veth up and its bridge port "
    "forwarding, a listener inside the container, docker-proxy when userland-proxy is on, the "
    "per-port hairpin MASQUERADE when it is off; 0 when one is broken (published_port_broken "
    "says which), unknown (published_port_unknown) or restricted (published_port_restricted).",
    PORT_LABELS,
    collector=NAME,
)
PORT_BROKEN = declare(
    "published_port_broken",
    "gauge",
    "1, present only while the port is broken, labeled with the first broken hop on its path: "
    "dnat, forward, ip_forward, veth, bridge_port, listener (nothing listens on the container "
    "port inside the container), proxy (no docker-proxy) or hairpin_masquerade (userland-proxy "
    "off: no -s C -d C --dport P MASQUERADE, a container cannot reach its own port). Broken in "
    "two readings a moment apart.",
    (*PORT_LABELS, "hop"),
    collector=NAME,
)
PORT_UNKNOWN = declare(
    "published_port_unknown",
    "gauge",
    "1, present only while no hop is broken but one could not be judged (a collector's reading "
    "missing, the container's PID 1 gone mid-read, a refused read), labeled with the first "
    "such hop: never counted as broken.",
    (*PORT_LABELS, "hop"),
    collector=NAME,
)
PORT_RESTRICTED = declare(
    "published_port_restricted",
    "gauge",
    "1, present only while no hop is broken or unknown but the port's forward path drops some "
    "sources' new connections (a DOCKER-USER or other filter rule before its ACCEPT matching "
    "source addresses, an input interface, a source set: an allowlist or a block list), one "
    "series per such rule: rule is where it is (backend table/chain rule N), sources which "
    "connections it drops (from 10.0.0.9/32; not from 10.0.0.0/8, in by eth0).",
    (*PORT_LABELS, "hop", "rule", "sources"),
    collector=NAME,
)


def write(snapshot: Snapshot, out: Families) -> None:
    ports = snapshot.current(NAME, PortsFacts)
    if ports is None:
        return
    if any(c.refused for c in ports.listeners):
        out.add(PRIVILEGE_MISSING, 1, NAME, "CAP_SYS_PTRACE")
    verdicts = port_verdicts(
        ports,
        snapshot.current("nat", NatFacts),
        snapshot.current("firewall", FirewallFacts),
        snapshot.current("network", NetworkFacts),
    )
    for v in verdicts:
        labels = (
            v.container,
            v.host_address,
            str(v.port.host_port),
            v.port.protocol,
            str(v.port.container_port),
        )
        out.add(PORT_OK, int(v.verdict == OK), *labels)
        first = v.first
        if first is not None and v.verdict == BROKEN:
            out.add(PORT_BROKEN, 1, *labels, first.name)
        elif first is not None and v.verdict == UNKNOWN:
            out.add(PORT_UNKNOWN, 1, *labels, first.name)
        elif first is not None and v.verdict == RESTRICTED:
            for cut in first.cuts:
                out.add(PORT_RESTRICTED, 1, *labels, first.name, cut.rule, cut.sources)
