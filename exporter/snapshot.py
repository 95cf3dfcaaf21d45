"""The immutable state /metrics renders: per collector, its last outcome and its last good facts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class CollectorState:
    name: str
    success: bool
    duration_seconds: float
    last_success_time: float | None = None
    # The facts of the last successful run. Kept after a failure only for joins (a container's
    # name while the Engine API is down); a failed collector's own series are not exported.
    facts: object | None = None
    error: str | None = None
    # What the run counted (rule and link counters), kept apart from the facts verdicts are
    # judged on: traffic moves counters every run, and must not make verdict writers run again.
    counters: object | None = None

    @classmethod
    def succeeded(
        cls, name: str, read: object, duration_seconds: float = 0.0, at: float | None = None
    ) -> CollectorState:
        """A successful run's state from what its source returned: facts, or Sampled."""
        if isinstance(read, Sampled):
            return cls(name, True, duration_seconds, at, read.facts, counters=read.counters)
        return cls(name, True, duration_seconds, at, read)


@dataclass(frozen=True)
class Sampled:
    """What a source returns when it counts as well as observes: writers that read only the
    facts are not re-run when only the counters moved (metrics.Renderer)."""

    facts: object
    counters: object


def _empty() -> Mapping[str, CollectorState]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Snapshot:
    collectors: Mapping[str, CollectorState] = field(default_factory=_empty)
    # On a watched view (watched()): whose facts (name, False) and counters (name, True) were
    # asked of it.
    reads: set[tuple[str, bool]] | None = field(default=None, compare=False, repr=False)

    def with_state(self, state: CollectorState) -> Snapshot:
        return Snapshot(MappingProxyType({**self.collectors, state.name: state}))

    def watched(self) -> Snapshot:
        """The same snapshot, noting in `reads` whose facts are asked of it: what a writer
        depends on, found by watching it write (metrics.Renderer)."""
        return Snapshot(self.collectors, set())

    def current(self, name: str, kind: type[T]) -> T | None:
        """Facts of `name` if its latest run succeeded: what may be exported as fresh."""
        if self.reads is not None:
            self.reads.add((name, False))
        state = self.collectors.get(name)
        if state is None or not state.success:
            return None
        return state.facts if isinstance(state.facts, kind) else None

    def counters(self, name: str, kind: type[T]) -> T | None:
        """Counters of `name` if its latest run succeeded."""
        if self.reads is not None:
            self.reads.add((name, True))
        state = self.collectors.get(name)
        if state is None or not state.success:
            return None
        return state.counters if isinstance(state.counters, kind) else None

    def last_good(self, name: str, kind: type[T]) -> T | None:
        """Facts of `name`'s last successful run, however old: for joins only."""
        if self.reads is not None:
            self.reads.add((name, False))
        state = self.collectors.get(name)
        if state is None:
            return None
        return state.facts if isinstance(state.facts, kind) else None
