"""The ports collector's `inspect` section: each published port, its verdict and the first hop
that broke (or could not be judged), with the reason."""

from __future__ import annotations

from exporter.collectors.firewall.facts import FirewallFacts
from exporter.collectors.nat.facts import NatFacts
from exporter.collectors.network.facts import NetworkFacts
from exporter.collectors.ports.facts import NAME, PortsFacts
from exporter.collectors.ports.judge import PortVerdict, port_verdicts
from exporter.report import table
from exporter.snapshot import Snapshot


def sections(snapshot: Snapshot) -> list[str]:
    ports = snapshot.current(NAME, PortsFacts)
    if ports is None:
        return []
    verdicts = port_verdicts(
        ports,
        snapshot.current("nat", NatFacts),
        snapshot.current("firewall", FirewallFacts),
        snapshot.current("network", NetworkFacts),
    )
    return [ports_table(verdicts, ports.containers is None)]


def first_hop_text(verdict: PortVerdict) -> str:
    first = verdict.first
    if first is None:
        return "-"
    return f"{first.name}: {first.reason}" if first.reason else first.name


def ports_table(verdicts: tuple[PortVerdict, ...], unjudged: bool = False) -> str:
    title = "PUBLISHED PORTS" + (" (not judged: the Engine API is unreadable)" if unjudged else "")
    return table(
        title,
        ("PORT", "CONTAINER", "VERDICT", "FIRST BROKEN HOP"),
        ((v.text, v.container, v.verdict.upper(), first_hop_text(v)) for v in verdicts),
    )
