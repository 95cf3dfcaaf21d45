"""conntrack: the host's connection-tracking table, how full it is and the kernel's counters of
what that costs, and which containers hold its entries. Runs on a slow interval of its own."""

from exporter.collectors import CollectorDef, Flag, settings_free
from exporter.collectors.conntrack import metrics, report, source
from exporter.collectors.conntrack.facts import ConntrackFacts


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1: {text}")
    return value


COLLECTOR = CollectorDef(
    name=metrics.NAME,
    description="the connection-tracking table's fill level and counters, and the containers "
    "holding its entries (one ctnetlink dump; its own slow interval)",
    facts=ConntrackFacts,
    source=source.build,
    writer=settings_free(metrics.write),
    report=report.sections,
    flags=(
        Flag(
            "max-entries",
            _positive,
            250000,
            "entries the ctnetlink dump reads per run at most; the rest are counted in "
            "docker_host_conntrack_dump_skipped_entries (default: 250000)",
        ),
    ),
    default_interval=60.0,  # a full table holds hundreds of thousands of entries
)
