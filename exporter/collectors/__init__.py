"""The collectors: one module each. A collector pairs a source (I/O, run by the sampler) with a
writer (pure: Snapshot -> metric families, run once per snapshot)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from exporter.metrics import FamilyWriter, Writer
from exporter.settings import Settings
from exporter.snapshot import Snapshot


class Source(Protocol):
    def read(self) -> object:
        """One sample of the host: returns frozen facts or raises with a reason."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CollectorDef:
    name: str
    description: str
    build: Callable[[Settings], Source]
    write: FamilyWriter
    facts_type: type
    enabled_by_default: bool = True
    default_interval: float | None = None  # None: --sample.interval
    # For a writer that depends on settings (a top-K flag): builds it from them.
    configure: Callable[[Settings], FamilyWriter] | None = None
    # Other collectors whose facts the writer joins with (the container list, for names), and
    # anything else of the snapshot it depends on, for Writer.key.
    joins: tuple[str, ...] = ()
    render_key: Callable[[Snapshot], object] | None = None

    def writer(self, settings: Settings) -> FamilyWriter:
        return self.configure(settings) if self.configure else self.write

    def render_writer(self, settings: Settings) -> Writer:
        """The writer, re-run only when the facts it reads (its own, joined ones) change."""
        return Writer(self.writer(settings), (self.name, *self.joins), self.render_key)


def all_collectors() -> tuple[CollectorDef, ...]:
    # Imported here so that declaring the metric families happens once, in a fixed order.
    from exporter.collectors import (  # noqa: PLC0415
        containers,
        daemon,
        layers,
        nat,
        network,
        processes,
    )

    return (
        containers.COLLECTOR,
        processes.COLLECTOR,
        network.COLLECTOR,
        nat.COLLECTOR,
        daemon.COLLECTOR,
        layers.COLLECTOR,
    )


def by_name() -> dict[str, CollectorDef]:
    return {c.name: c for c in all_collectors()}
