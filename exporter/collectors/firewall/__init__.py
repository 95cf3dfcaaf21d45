"""firewall: Docker's filter rules in both firewall backends (IPv4 and IPv6) held against what
its networks and published ports need, each published port's forward path, IP forwarding and
br_netfilter's switches."""

from exporter.collectors import CollectorDef, settings_free
from exporter.collectors.firewall import metrics, report, source
from exporter.collectors.firewall.facts import NAME, FirewallFacts

COLLECTOR = CollectorDef(
    name=NAME,
    description="Docker's filter rules in both firewall backends, forward paths, IP forwarding",
    facts=FirewallFacts,
    source=source.build,
    writer=settings_free(metrics.write),
    report=report.sections,
)
