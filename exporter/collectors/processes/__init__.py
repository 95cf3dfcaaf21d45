"""processes: from /proc alone, each container's PID 1, namespaces, process and zombie counts,
the containerd shim that holds it, orphaned shims, and the dockerd and containerd processes."""

from exporter.collectors import CollectorDef, settings_free
from exporter.collectors.processes import metrics, report, source
from exporter.collectors.processes.facts import NAME, ProcessCounters, ProcessFacts
from exporter.collectors.processes.options import RESYNC_INTERVAL

COLLECTOR = CollectorDef(
    name=NAME,
    description="PID 1, namespaces, process and zombie counts, shims, daemons, from /proc",
    facts=ProcessFacts,
    source=source.build,
    writer=settings_free(metrics.write),
    report=report.sections,
    options=(RESYNC_INTERVAL,),
    # The process count apart: a process anywhere on the host re-runs this writer only.
    counter_writer=settings_free(metrics.write_counters),
    counters=ProcessCounters,
)
