"""What the nat collector observed: both firewall backends' nat rules (the tick's reading of
the firewall) and what Docker's networks and published ports need (from the Engine API)."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.readers.docker_api import ContainerRecord, DockerNetwork
from exporter.readers.nat_rules import NatRule
from exporter.readers.netfilter_base import FirewallBackend

NAME = "nat"  # the collector's name: --collector.nat, its series' collector label


@dataclass(frozen=True)
class NatExpectations:
    """What Docker's networks and published ports need, from the Engine API."""

    networks: tuple[DockerNetwork, ...]
    containers: tuple[ContainerRecord, ...]  # running, with published ports (nat_expectations)
    # The Engine's version ("20.10.24", "28.1.0"): which filter layout Docker writes when
    # none of its filter chains is left to show it.
    engine_version: str = ""


@dataclass(frozen=True)
class NatFacts:
    backends: tuple[FirewallBackend, ...]
    rules: tuple[NatRule, ...]
    expectations: NatExpectations | None  # None when the Engine API could not be read
    # Keys of the expectations that looked unmet in a first reading a moment before this one.
    earlier_missing: tuple[str, ...] = ()
