"""network: every host veth paired with its container (no `docker exec`), who holds each
namespace a veth leads into, bridges and their ports, per-veth traffic as the host side counts
it, and orphaned veths of Docker's."""

from exporter.collectors import CollectorDef, settings_free
from exporter.collectors.network import metrics, report, source
from exporter.collectors.network.facts import NAME, NetworkCounters, NetworkFacts
from exporter.collectors.network.options import RESYNC_INTERVAL

COLLECTOR = CollectorDef(
    name=NAME,
    description="veth pairs, bridges and their ports, per-veth traffic, orphaned veths",
    facts=NetworkFacts,
    source=source.build,
    writer=settings_free(metrics.write),
    report=report.sections,
    options=(RESYNC_INTERVAL,),
    # Veth counters apart: traffic re-runs this writer only, never the verdicts.
    counter_writer=settings_free(metrics.write_counters),
    counters=NetworkCounters,
)
