"""nat: MASQUERADE and DNAT rules from both firewall backends (IPv4 and IPv6), which backend
Docker uses, and the nat rules Docker's networks and published ports need but lack (the filter
rules are the firewall collector's, from the same reading)."""

from exporter.collectors import CollectorDef, settings_free
from exporter.collectors.nat import metrics, report, source
from exporter.collectors.nat.facts import NAME, NatFacts
from exporter.readers.nat_rules import NatCounters

COLLECTOR = CollectorDef(
    name=NAME,
    description="MASQUERADE and DNAT rules in both firewall backends, and the ones Docker lacks",
    facts=NatFacts,
    source=source.build,
    writer=settings_free(metrics.write),
    report=report.sections,
    # Rule counters apart: traffic re-runs this writer only, never the verdicts (or ports').
    counter_writer=settings_free(metrics.write_counters),
    counters=NatCounters,
)
