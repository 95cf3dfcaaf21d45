"""What the network collector observed: one reading of the host's links, the containers'
network namespaces, the far ends of the veths, and who holds the namespaces no container
explains (its dataclasses are the network reader's), and what the confirming reading adds."""

from __future__ import annotations

from dataclasses import dataclass, fields

from exporter.readers.netlink import Link, LinkCounters
from exporter.readers.netns import NamespaceOwner
from exporter.readers.network import ContainerNetns, NetworkCounters, NetworkReading, PeerLink

__all__ = [
    "ContainerNetns",
    "Link",
    "LinkCounters",
    "NamespaceOwner",
    "NetworkCounters",
    "NetworkFacts",
    "PeerLink",
]


NAME = "network"  # the collector's name: --collector.network, its series' collector label


@dataclass(frozen=True)
class NetworkFacts(NetworkReading):
    """One run: its last reading, and what looked orphaned in the reading before it."""

    # (ifindex, name) of veths that looked orphaned in a first reading, taken a moment before
    # this one; only those may be reported orphaned (see judge.veth_views).
    earlier_suspects: tuple[tuple[int, str], ...] = ()

    @classmethod
    def of(
        cls, reading: NetworkReading, earlier_suspects: tuple[tuple[int, str], ...] = ()
    ) -> NetworkFacts:
        values = {f.name: getattr(reading, f.name) for f in fields(NetworkReading)}
        return cls(**values, earlier_suspects=earlier_suspects)
