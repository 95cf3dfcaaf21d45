"""ports: one verdict per published port, hop by hop along the paths its connections really
take (DNAT, FORWARD, IP forwarding, veth, bridge port, a listener in the container, docker-proxy,
the per-port hairpin MASQUERADE: paths.py says which, by binding), joined from the nat,
network and daemon collectors' facts and its own reading of each publishing container's
sockets (/proc/PID/net) and of the docker-proxy processes."""

from exporter.collectors import CollectorDef, Flag, settings_free
from exporter.collectors.ports import metrics, report, source
from exporter.collectors.ports.facts import PortsFacts
from exporter.settings import parse_duration

COLLECTOR = CollectorDef(
    name=metrics.NAME,
    description="one verdict per published port, and the first hop on its path that broke",
    facts=PortsFacts,
    source=source.build,
    writer=settings_free(metrics.write),
    report=report.sections,
    flags=(
        Flag(
            "listener-budget",
            parse_duration,
            0.006,
            "CPU time a run spends at most reading containers' /proc/PID/net for listeners "
            "(each read of tcp or tcp6 walks the kernel's whole TCP hash, ~1.7 ms with 262144 "
            "buckets): containers never read come first, then those read longest ago; the "
            "rest keep their last reading (default: 6ms)",
        ),
    ),
)
