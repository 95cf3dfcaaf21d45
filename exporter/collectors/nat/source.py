"""The nat collector's source: the rules of both firewall backends, and what Docker's networks
and published ports need (the tick's container list); when an expected rule looks missing, a
second reading a moment later, of the rules and of the containers, to confirm it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from exporter.collectors import Source
from exporter.collectors.confirm import confirm_wait, read_twice
from exporter.collectors.nat.facts import NAME, ForwardingSwitches, NatExpectations, NatFacts
from exporter.collectors.nat.judge import (
    forward_paths,
    port_path_suspects,
    unmet_expectations,
    unmet_filter_rules,
)
from exporter.logonce import ChangeLog
from exporter.readers.docker_api import (
    RUNNING_STATES,
    DockerUnavailable,
    EngineFacts,
)
from exporter.readers.netfilter import (
    FilterCache,
    FilterTables,
    FirewallBackend,
    FirewallUnreadable,
    NatRule,
    read_forwarding_switches,
    read_legacy_with_filter,
    read_nftables_with_filter,
)
from exporter.readers.nfnetlink import NftSocket
from exporter.readers.procfs import ProcfsError
from exporter.settings import Settings
from exporter.tick import Tick

log = logging.getLogger(__name__)


def nat_expectations(engine: EngineFacts) -> NatExpectations:
    """Docker's networks and its running containers, with their published ports."""
    return NatExpectations(
        networks=engine.networks,
        containers=tuple(c for c in engine.containers if c.state in RUNNING_STATES),
        engine_version=next((c.version for c in engine.components if c.name == "Engine"), ""),
    )


def unmet(nat: NatFacts) -> tuple[str, ...]:
    """What a first reading lacks, NAT and filter rules alike, and what the published-port
    verdicts would call broken (a blocked forward path, IP forwarding off)."""
    return unmet_expectations(nat) + unmet_filter_rules(nat) + port_path_suspects(nat)


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


class NatSource:
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
        self._timeout = timeout
        self._nft: NftSocket | None = None
        self._filter_cache = FilterCache()

    def close(self) -> None:
        if self._nft is not None:
            self._nft.close()
            self._nft = None

    def read(self, tick: Tick) -> NatFacts:
        return read_twice(
            self._read(tick.engine, tick),
            unmet,
            # A second look at the containers too: one removed meanwhile took its rule with it.
            lambda: self._read(tick.engine_again, tick),
            lambda second, missing: replace(second, earlier_missing=missing),
            self.confirm_after,
        )

    def _read_nftables(self) -> tuple[FirewallBackend, list[NatRule], FilterTables]:
        if self._nft is None:
            self._nft = NftSocket(self._timeout)
        try:
            return read_nftables_with_filter(self._nft, self._filter_cache)
        except FirewallUnreadable:
            self.close()  # a socket left mid-answer by an error is not reused
            raise

    def _read(self, engine: Callable[[float | None], EngineFacts], tick: Tick) -> NatFacts:
        # The Engine API first: a rule Docker adds after this is not yet expected.
        expectations: NatExpectations | None = None
        error: str | None = None
        try:
            expectations = nat_expectations(engine(self.engine_wait))
        except DockerUnavailable as exc:
            error = str(exc)
        self._log.update(
            "docker",
            error,
            "no missing-rule verdicts: the Engine API is unreadable",
            "nat source readable again",
            input="docker",
        )
        backends: list[FirewallBackend] = []
        rules: list[NatRule] = []
        filters: list[FilterTables] = []
        reads: tuple[
            tuple[str, Callable[[], tuple[FirewallBackend, list[NatRule], FilterTables]]], ...
        ] = (
            ("nftables", self._read_nftables),
            ("legacy", lambda: read_legacy_with_filter(self.procfs)),
        )
        for name, read in reads:
            try:
                backend, found, filter_tables = read()
            except FirewallUnreadable as exc:
                needs = exc.missing_capabilities
                self._log.update(
                    name,
                    str(exc),
                    f"firewall backend unreadable: needs {' and '.join(needs)}"
                    if needs
                    else "firewall backend unreadable",
                    "nat source readable again",
                    backend=name,
                )
                backends.append(FirewallBackend(name, False, str(exc), 0, (), needs))
                continue
            self._log.update(name, None, "", "nat source readable again", input=name)
            backends.append(backend)
            rules.extend(found)
            filters.append(filter_tables)
        managed, said_by = docker_iptables(tick)
        if not any(b.readable or b.missing_capabilities for b in backends):
            # Nothing readable, and not for want of a privilege (that is reported, not failed).
            raise FirewallUnreadable("; ".join(b.error or "" for b in backends))
        facts = NatFacts(
            backends=tuple(backends),
            rules=tuple(rules),
            expectations=expectations,
            filter_chains=tuple(c for t in filters for c in t.chains),
            filter_rules=tuple(r for t in filters for r in t.rules),
            forwarding=ForwardingSwitches(*read_forwarding_switches(self.procfs)),
            docker_iptables=managed,
            docker_iptables_from=said_by,
        )
        # Every published port's forward path, walked once here for this reading (the port
        # verdicts and the confirming second reading read it).
        return replace(facts, forward_paths=forward_paths(facts))


def build(settings: Settings) -> Source:
    return NatSource(
        settings.procfs,
        timeout=settings.timeout(NAME),
        # The rules are read whether or not the Engine API answers in time: half the run for
        # the container list, the rest for the rules and a confirming second reading.
        engine_wait=settings.call_timeout(NAME),
    )
