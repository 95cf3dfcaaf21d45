"""ports: one verdict per published port, hop by hop along the paths its connections really
take (DNAT, FORWARD, IP forwarding, veth, bridge port, a listener in the container, docker-proxy,
the per-port hairpin MASQUERADE: paths.py says which, by binding), joined from the nat,
network and daemon collectors' facts and its own reading of each publishing container's
sockets (/proc/PID/net) and of the docker-proxy processes."""

from exporter.collectors import CollectorDef, settings_free
from exporter.collectors.ports import metrics, report, source
from exporter.collectors.ports.facts import NAME, PortsFacts
from exporter.collectors.ports.options import LISTENER_REFRESH

COLLECTOR = CollectorDef(
    name=NAME,
    description="one verdict per published port, and the first hop on its path that broke",
    facts=PortsFacts,
    source=source.build,
    writer=settings_free(metrics.write),
    report=report.sections,
    options=(LISTENER_REFRESH,),
)
