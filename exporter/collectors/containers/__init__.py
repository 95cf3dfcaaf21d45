"""containers: every container the Engine API lists, in any state, the engine's versions, and
the exporter's own container."""

from exporter.collectors import CollectorDef
from exporter.collectors.containers import metrics, report, source
from exporter.collectors.containers.facts import NAME
from exporter.collectors.containers.options import LABELS, RESYNC_INTERVAL
from exporter.readers.docker_api import EngineFacts

COLLECTOR = CollectorDef(
    name=NAME,
    description="containers in every state from the Docker Engine API (listed on change)",
    facts=EngineFacts,
    source=source.build,
    writer=metrics.writer,
    report=report.sections,
    options=(LABELS, RESYNC_INTERVAL),
)
