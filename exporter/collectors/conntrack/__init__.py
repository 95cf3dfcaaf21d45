"""conntrack: the host's connection-tracking table, how full it is and the kernel's counters of
what that costs, and which containers hold its entries. Runs on a slow interval of its own."""

from exporter.collectors import CollectorDef, settings_free
from exporter.collectors.conntrack import metrics, report, source
from exporter.collectors.conntrack.facts import NAME, ConntrackFacts
from exporter.collectors.conntrack.options import MAX_ENTRIES

COLLECTOR = CollectorDef(
    name=NAME,
    description="the connection-tracking table's fill level and counters, and the containers "
    "holding its entries (one ctnetlink dump; its own slow interval)",
    facts=ConntrackFacts,
    source=source.build,
    writer=settings_free(metrics.write),
    report=report.sections,
    options=(MAX_ENTRIES,),
    default_interval=60.0,  # a full table holds hundreds of thousands of entries
)
