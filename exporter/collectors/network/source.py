"""The network collector's source: a reading of the host's links and the namespaces behind its
veths that follows rtnetlink's notifications (the very same facts while nothing changed), and,
when any veth looks orphaned, a fresh second reading a moment later to confirm it. The veths'
counters are read every run and returned apart (Sampled), so traffic re-runs only their writer."""

from __future__ import annotations

from typing import cast

from exporter.changes import RereadReason
from exporter.collectors import Source
from exporter.collectors.confirm import confirm_wait, read_twice
from exporter.collectors.network.facts import NAME, NetworkFacts
from exporter.collectors.network.judge import orphan_suspects
from exporter.collectors.network.options import RESYNC_INTERVAL
from exporter.readers.docker_api import EngineFacts
from exporter.readers.network import NetworkCounters, NetworkReader, NetworkReading
from exporter.settings import Settings
from exporter.snapshot import Sampled
from exporter.tick import Tick


class NetworkSource:
    def __init__(
        self,
        timeout: float,
        confirm_after: float = 1.0,
        resync_interval: float | None = RESYNC_INTERVAL.default,
    ) -> None:
        self.reader = NetworkReader(timeout, resync_interval)
        # Long enough for libnetwork to finish building or tearing down a pair, short enough
        # to leave most of the run's timeout.
        self.confirm_after = confirm_wait(confirm_after, timeout)
        # The last reading the facts were made of, the engine's answer they were judged with,
        # and those facts: while neither changed, neither do the suspects nor the facts.
        self._first: tuple[NetworkReading, EngineFacts | None, NetworkFacts] | None = None
        self._facts: NetworkFacts | None = None

    def read(self, tick: Tick) -> Sampled:
        return Sampled(*self.sample(tick))

    def sample(self, tick: Tick) -> tuple[NetworkFacts, NetworkCounters]:
        """read(), typed: the facts and the veths' counters."""
        procfs = tick.host.procfs
        # The tick's /proc scan will do for a first look; the second takes a scan of its own.
        reading = self.reader.read(procfs, tick.proc_scan())
        self._count(tick)
        # The Engine API's last answer, without a call: which bridges and networks are
        # Docker's, to decide what to look at again. The verdicts use a fresh one.
        engine = tick.last_engine()
        if self._first is not None and self._first[:2] == (reading, engine):
            # Nothing changed since the reading the last facts were judged on (the confirming
            # one, when there were suspects): they stand, orphans confirmed twice included.
            facts = self._first[2]
        else:
            last = [reading]  # the reading the facts end up made of

            def again() -> NetworkFacts:
                last.append(self._again(tick))
                return NetworkFacts.of(last[-1])

            facts = read_twice(
                NetworkFacts.of(reading),
                lambda facts: orphan_suspects(facts, engine),
                again,
                lambda second, suspects: NetworkFacts.of(second, earlier_suspects=suspects),
                self.confirm_after,
            )
            self._first = (last[-1], engine, facts)
        if facts == self._facts:
            facts = self._facts  # the same object: the renderer skips the verdict writer
        self._facts = facts
        return facts, self.reader.counters()

    def _again(self, tick: Tick) -> NetworkReading:
        procfs = tick.host.procfs
        return self.reader.read(procfs, procfs.scan(confirming=True), fresh=True)

    def _count(self, tick: Tick) -> None:
        if self.reader.lost:
            tick.host.changes.lost(NAME)
        if self.reader.reread is not None:
            tick.host.changes.reread(NAME, cast(RereadReason, self.reader.reread))

    def close(self) -> None:
        self.reader.close()


def build(settings: Settings) -> Source:
    return NetworkSource(timeout=settings.timeout(NAME), resync_interval=settings[RESYNC_INTERVAL])
