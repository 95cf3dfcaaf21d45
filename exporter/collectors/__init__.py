"""The collectors: one package each, registered below with one line.

A collector package holds everything of its collector:
    facts.py    NAME, and the frozen dataclasses its source returns (what one run observed)
    judge.py    pure joins and verdicts over those facts
    metrics.py  its metric families (declared once) and the writer: Snapshot -> series
    report.py   its sections of `docker-host-exporter inspect`
    source.py   its source (I/O through the readers and the tick)
    options.py  its own flags, if any (exporter.options.Option), read as settings[OPTION]
    __init__.py COLLECTOR: the definition below
docs/adding-a-collector.md walks through adding one.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from exporter.metrics import FamilyWriter, Writer
from exporter.options import Option
from exporter.settings import Settings
from exporter.snapshot import Snapshot
from exporter.tick import Tick


class Source(Protocol):
    def read(self, tick: Tick) -> object:
        """One sample of the host: returns frozen facts (or snapshot.Sampled: facts and
        counters apart) or raises with a reason. Readings every collector may use (a /proc
        scan, the container list) come from the tick. When nothing changed, returning the very
        same facts object as last time lets the renderer skip its writers at no cost."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CollectorDef:
    name: str
    description: str
    facts: type  # what its source returns
    source: Callable[[Settings], Source]
    # Its writer for these settings. The renderer re-runs it only when the facts it read
    # changed, whichever collectors' they were: no cache keys here.
    writer: Callable[[Settings], FamilyWriter]
    report: Callable[[Snapshot], list[str]]
    options: tuple[Option[Any], ...] = ()  # its own flags, --collector.<name>.<option>
    default_interval: float | None = None  # None: --sample.interval
    enabled_by_default: bool = True
    # Its writer of the families that come from its counters (Snapshot.counters), if it keeps
    # counters apart from facts: re-run when counters move, while `writer` waits for facts.
    counter_writer: Callable[[Settings], FamilyWriter] | None = None
    counters: type | None = None  # what its source's counters are (Sampled.counters)

    def writers(self, settings: Settings) -> tuple[Writer, ...]:
        """Its writers for the renderer, the facts' first."""
        facts = Writer(self.writer(settings), collector=self.name)
        if self.counter_writer is None:
            return (facts,)
        return (facts, Writer(self.counter_writer(settings), collector=self.name))

    def write_all(self, settings: Settings) -> FamilyWriter:
        """One writer of all its families (a from-scratch render, `inspect`, tests)."""
        writers = [w.write for w in self.writers(settings)]

        def write(snapshot: Snapshot, out: Any) -> None:
            for each in writers:
                each(snapshot, out)

        return write


# The collectors, one line each, in the order their families are declared and reported.
PACKAGES = (
    "containers",
    "processes",
    "network",
    "nat",
    "firewall",
    "daemon",
    "layers",
    "conntrack",
    "ports",
)


def settings_free(write: FamilyWriter) -> Callable[[Settings], FamilyWriter]:
    """A CollectorDef.writer for a writer that no setting changes."""
    return lambda _settings: write


@functools.cache
def all_collectors() -> tuple[CollectorDef, ...]:
    # Imported here, once, so that the metric families are declared in a fixed order.
    found = []
    for package in PACKAGES:
        collector = importlib.import_module(f"{__name__}.{package}").COLLECTOR
        assert isinstance(collector, CollectorDef), package
        found.append(collector)
    return tuple(found)


def by_name() -> dict[str, CollectorDef]:
    return {c.name: c for c in all_collectors()}


def facts_types() -> dict[str, type]:
    """Each collector's facts type, by name: what a recording's facts decode to."""
    return {c.name: c.facts for c in all_collectors()}


def counters_types() -> dict[str, type]:
    """The counters' type of each collector that keeps counters apart: what a recording's
    counters decode to."""
    return {c.name: c.counters for c in all_collectors() if c.counters is not None}
