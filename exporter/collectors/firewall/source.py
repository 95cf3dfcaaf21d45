"""The firewall collector's source: the filter rules of both firewall backends (the tick's
reading of the firewall, shared with the nat collector), the kernel's forwarding switches,
whether dockerd manages the firewall, and what Docker's networks and published ports need (the
tick's container list); when an expected rule looks missing or a port's forward path blocked,
a second reading a moment later to confirm it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from exporter.collectors import Source
from exporter.collectors.confirm import confirm_wait, read_twice
from exporter.collectors.firewall.facts import NAME, FirewallFacts, ForwardingSwitches
from exporter.collectors.firewall.judge import (
    filter_index,
    port_path_suspects,
    unmet_filter_rules,
)
from exporter.collectors.nat.source import check_backends, read_expectations
from exporter.logonce import ChangeLog
from exporter.readers.docker_api import EngineFacts
from exporter.readers.netfilter import NetfilterReading
from exporter.readers.procfs import ProcfsError
from exporter.readers.sysctl import read_forwarding_switches
from exporter.settings import Settings
from exporter.tick import Tick

log = logging.getLogger(__name__)


def unmet(fw: FirewallFacts) -> tuple[str, ...]:
    """What a first reading lacks, and what the published-port verdicts would call broken (a
    blocked forward path, IP forwarding off): one index of the reading for both."""
    ix = filter_index(fw)
    return unmet_filter_rules(fw, ix) + port_path_suspects(fw, ix)


def docker_iptables(tick: Tick) -> tuple[bool | None, str]:
    """Whether the dockerd serving --docker.host manages iptables, and what says so: its
    --iptables flag, its daemon.json's "iptables", or the default (on). (None, "") when no
    dockerd or its file could be read. A firewall reload can leave Docker no chain at all:
    then only this tells a flushed firewall from a dockerd that manages none."""
    try:
        dockerd = tick.dockerd()
    except ProcfsError:
        return None, ""
    return dockerd.boolean("iptables", default=True) if dockerd is not None else (None, "")


class FirewallSource:
    def __init__(
        self,
        procfs: str | Path,
        timeout: float,
        confirm_after: float = 1.0,
        engine_wait: float | None = None,
    ) -> None:
        self.procfs = procfs
        self.engine_wait = engine_wait
        # A network or a published port is set up in steps; look again before calling a rule
        # missing, within a quarter of the run's timeout.
        self.confirm_after = confirm_wait(confirm_after, timeout)
        self._log = ChangeLog(log)
        # The last facts in which nothing looked missing or blocked: a reading equal to them
        # is judged the same, so it is not judged again, and they are returned as they are
        # (the very object: the writers behind them, the ports', are skipped).
        self._unsuspected: FirewallFacts | None = None

    def close(self) -> None:
        """Nothing of its own: the firewall reader is the host's (tick.py)."""

    def read(self, tick: Tick) -> FirewallFacts:
        first = self._read(tick.engine, tick.netfilter, tick)
        if first == self._unsuspected:
            return self._unsuspected
        facts = read_twice(
            first,
            unmet,
            # A second look at the containers too: one removed meanwhile took its rule with it.
            lambda: self._read(tick.engine_again, tick.netfilter_again, tick),
            lambda second, missing: replace(second, earlier_missing=missing),
            self.confirm_after,
        )
        self._unsuspected = facts if facts is first else None
        return facts

    def _read(
        self,
        engine: Callable[[float | None], EngineFacts],
        netfilter: Callable[[], NetfilterReading],
        tick: Tick,
    ) -> FirewallFacts:
        # The Engine API first: a rule Docker adds after this is not yet expected.
        expectations = read_expectations(engine, self.engine_wait, self._log, NAME)
        reading = netfilter()
        check_backends(reading, self._log, NAME)
        managed, said_by = docker_iptables(tick)
        return FirewallFacts(
            backends=reading.backends,
            expectations=expectations,
            filter_chains=reading.filter.chains,
            filter_rules=reading.filter.rules,
            forwarding=ForwardingSwitches(*read_forwarding_switches(self.procfs)),
            docker_iptables=managed,
            docker_iptables_from=said_by,
        )


def build(settings: Settings) -> Source:
    return FirewallSource(
        settings.procfs,
        timeout=settings.timeout(NAME),
        # The rules are read whether or not the Engine API answers in time: half the run for
        # the container list, the rest for the rules and a confirming second reading.
        engine_wait=settings.call_timeout(NAME),
    )
