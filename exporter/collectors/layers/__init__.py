"""layers: image layers under copy-on-write. What each image shares and what it alone costs (as
the engine's `docker system df -v` counts them), which layers are shared by which images, bytes
saved by sharing, and each container's read/write layer. Runs on a slow interval of its own."""

from exporter.collectors import CollectorDef
from exporter.collectors.layers import metrics, report, source
from exporter.collectors.layers.facts import NAME, LayersFacts
from exporter.collectors.layers.options import TOP_K

COLLECTOR = CollectorDef(
    name=NAME,
    description="layers shared between images, unique bytes per image, read/write layers "
    "(from /system/df; its own slow interval)",
    facts=LayersFacts,
    source=source.build,
    writer=metrics.writer,
    report=report.sections,
    options=(TOP_K,),
    default_interval=120.0,  # /system/df walks every layer and container on disk
)
