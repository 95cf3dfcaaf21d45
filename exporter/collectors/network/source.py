"""The network collector's source: a reading of the host's links and the namespaces behind its
veths, and, when any veth looks orphaned, a second reading a moment later to confirm it."""

from __future__ import annotations

from exporter.collectors import Source
from exporter.collectors.confirm import confirm_wait, read_twice
from exporter.collectors.network.facts import NAME, NetworkFacts
from exporter.collectors.network.judge import orphan_suspects
from exporter.readers.network import NetworkReader
from exporter.settings import Settings
from exporter.tick import Tick


class NetworkSource:
    def __init__(self, timeout: float, confirm_after: float = 1.0) -> None:
        self.reader = NetworkReader(timeout)
        # Long enough for libnetwork to finish building or tearing down a pair, short enough
        # to leave most of the run's timeout.
        self.confirm_after = confirm_wait(confirm_after, timeout)

    def read(self, tick: Tick) -> NetworkFacts:
        procfs = tick.host.procfs
        # The tick's /proc scan will do for a first look; the second takes a scan of its own.
        first = NetworkFacts.of(self.reader.read(procfs, tick.proc_scan()))
        return read_twice(
            first,
            # The Engine API's last answer, without a call: which bridges and networks are
            # Docker's, to decide what to look at again. The verdicts use a fresh one.
            lambda facts: orphan_suspects(facts, tick.last_engine()),
            lambda: NetworkFacts.of(self.reader.read(procfs, procfs.scan())),
            lambda second, suspects: NetworkFacts.of(second, earlier_suspects=suspects),
            self.confirm_after,
        )

    def close(self) -> None:
        self.reader.close()


def build(settings: Settings) -> Source:
    return NetworkSource(timeout=settings.timeout(NAME))
