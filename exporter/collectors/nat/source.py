"""The nat collector's source: the nat rules of both firewall backends (the tick's reading of
the firewall, shared with the firewall collector), and what Docker's networks and published
ports need (the tick's container list); when an expected rule looks missing, a second reading a
moment later, of the rules and of the containers, to confirm it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from exporter.collectors import Source
from exporter.collectors.confirm import confirm_wait, read_twice
from exporter.collectors.nat.facts import NAME, NatExpectations, NatFacts
from exporter.collectors.nat.judge import unmet_or_hairpin
from exporter.logonce import ChangeLog
from exporter.readers.docker_api import RUNNING_STATES, DockerUnavailable, EngineFacts
from exporter.readers.nat_rules import NatCounters
from exporter.readers.netfilter import NetfilterReading
from exporter.readers.netfilter_base import FirewallUnreadable
from exporter.settings import Settings
from exporter.snapshot import Sampled
from exporter.tick import Tick

log = logging.getLogger(__name__)


def nat_expectations(engine: EngineFacts) -> NatExpectations:
    """Docker's networks and its running containers that publish ports: a container started or
    removed without any leaves the expectations (and the firewall's and NAT's facts, and their
    writers' output) as they were."""
    return NatExpectations(
        networks=engine.networks,
        containers=tuple(c for c in engine.containers if c.state in RUNNING_STATES and c.ports),
        engine_version=next((c.version for c in engine.components if c.name == "Engine"), ""),
    )


def read_expectations(
    engine: Callable[[float | None], EngineFacts],
    wait: float | None,
    changes: ChangeLog,
    collector: str,
) -> NatExpectations | None:
    """What Docker's networks and containers need, None (and a log line when that begins and
    ends) when the Engine API cannot be read: the rules are judged only against its view."""
    expectations: NatExpectations | None = None
    error: str | None = None
    try:
        expectations = nat_expectations(engine(wait))
    except DockerUnavailable as exc:
        error = str(exc)
    changes.update(
        "docker",
        error,
        "no missing-rule verdicts: the Engine API is unreadable",
        f"{collector} source readable again",
        input="docker",
    )
    return expectations


def check_backends(reading: NetfilterReading, changes: ChangeLog, collector: str) -> None:
    """Log each backend that cannot be read when that begins and ends; raise when none could
    be read, and not for want of a privilege (that is reported, not failed)."""
    again = f"{collector} source readable again"
    for b in reading.backends:
        if b.readable:
            changes.update(b.name, None, "", again, input=b.name)
            continue
        needs = b.missing_capabilities
        changes.update(
            b.name,
            b.error,
            f"firewall backend unreadable: needs {' and '.join(needs)}"
            if needs
            else "firewall backend unreadable",
            again,
            backend=b.name,
        )
    if not reading.readable:
        raise FirewallUnreadable("; ".join(b.error or "" for b in reading.backends))


class NatSource:
    def __init__(
        self,
        timeout: float,
        confirm_after: float = 1.0,
        engine_wait: float | None = None,
    ) -> None:
        self.engine_wait = engine_wait
        # A network or a published port is set up in steps; look again before calling a rule
        # missing, within a quarter of the run's timeout.
        self.confirm_after = confirm_wait(confirm_after, timeout)
        self._log = ChangeLog(log)
        # The last facts in which nothing looked missing: a reading equal to them is judged
        # the same, so it is not judged again, and they are returned as they are (the very
        # object: the writers behind them are skipped).
        self._unsuspected: NatFacts | None = None

    def close(self) -> None:
        """Nothing of its own: the firewall reader is the host's (tick.py)."""

    def read(self, tick: Tick) -> Sampled:
        first = self._read(tick.engine, tick.netfilter)
        if first[0] == self._unsuspected:
            return Sampled(self._unsuspected, first[1])
        facts, counters = read_twice(
            first,
            lambda reading: unmet_or_hairpin(reading[0]),
            # A second look at the containers too: one removed meanwhile took its rule with it.
            lambda: self._read(tick.engine_again, tick.netfilter_again),
            lambda second, missing: (replace(second[0], earlier_missing=missing), second[1]),
            self.confirm_after,
        )
        self._unsuspected = facts if facts is first[0] else None
        return Sampled(facts, counters)

    def _read(
        self,
        engine: Callable[[float | None], EngineFacts],
        netfilter: Callable[[], NetfilterReading],
    ) -> tuple[NatFacts, NatCounters]:
        # The Engine API first: a rule Docker adds after this is not yet expected.
        expectations = read_expectations(engine, self.engine_wait, self._log, NAME)
        reading = netfilter()
        check_backends(reading, self._log, NAME)
        facts = NatFacts(
            backends=reading.backends, rules=reading.nat_rules, expectations=expectations
        )
        return facts, reading.nat_counters


def build(settings: Settings) -> Source:
    return NatSource(
        timeout=settings.timeout(NAME),
        # The rules are read whether or not the Engine API answers in time: half the run for
        # the container list, the rest for the rules and a confirming second reading.
        engine_wait=settings.call_timeout(NAME),
    )
