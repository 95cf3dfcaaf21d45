"""What the nat collector observed: both firewall backends' nat rules, and what Docker's
networks and published ports need (from the Engine API)."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.readers.docker_api import ContainerRecord, DockerNetwork
from exporter.readers.netfilter import FirewallBackend, NatRule


@dataclass(frozen=True)
class NatExpectations:
    """What Docker's networks and published ports need, from the Engine API."""

    networks: tuple[DockerNetwork, ...]
    containers: tuple[ContainerRecord, ...]


@dataclass(frozen=True)
class NatFacts:
    backends: tuple[FirewallBackend, ...]
    rules: tuple[NatRule, ...]
    expectations: NatExpectations | None  # None when the Engine API could not be read
    # Keys of the expectations that looked unmet in a first reading a moment before this one.
    earlier_missing: tuple[str, ...] = ()
