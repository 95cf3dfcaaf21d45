"""daemon: dockerd's configuration drift. daemon.json against the running daemon (GET /info and
its reload events), keys given both as a flag and in the file, and what a SIGHUP would or would
not apply."""

from exporter.collectors import CollectorDef, settings_free
from exporter.collectors.daemon import metrics, report, source
from exporter.collectors.daemon.facts import NAME, DaemonConfigFacts
from exporter.collectors.daemon.options import RESYNC_INTERVAL

COLLECTOR = CollectorDef(
    name=NAME,
    description="daemon.json against the running dockerd: drift, flag conflicts, reloads",
    facts=DaemonConfigFacts,
    source=source.build,
    writer=settings_free(metrics.write),
    report=report.sections,
    options=(RESYNC_INTERVAL,),
)
