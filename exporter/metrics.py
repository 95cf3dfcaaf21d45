"""Metric families: each declared once (name, type, help, labels), rendered from a Snapshot.

Collectors declare their families here at import time with `declare`; the README's metric table
is checked against `CATALOGUE` by a test, so the docs cannot drift from what is exported.
Families are built fresh for every snapshot, so a vanished container's series vanish with it.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Literal, TypeVar, cast

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from exporter.logonce import ChangeLog
from exporter.snapshot import Snapshot

log = logging.getLogger(__name__)

PREFIX = "docker_host_"
SAMPLED_NOTE = " Sampled on the collector's interval, not at scrape time."

MetricKind = Literal["gauge", "counter"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...]
    collector: str

    @property
    def exposed_name(self) -> str:
        """As it appears in the exposition: counters gain `_total`."""
        return self.name + "_total" if self.kind == "counter" else self.name


CATALOGUE: dict[str, MetricSpec] = {}


def declare(
    name: str, kind: MetricKind, help: str, labels: Sequence[str] = (), *, collector: str
) -> MetricSpec:
    full = PREFIX + name
    if full in CATALOGUE:
        raise ValueError(f"metric {full} declared twice")
    spec = MetricSpec(full, kind, help, tuple(labels), collector)
    CATALOGUE[full] = spec
    return spec


_SERIES_DROPPED_NAME = PREFIX + "series_dropped"  # never capped: it reports the cap
# client_python's number formatting (Go's, which switches to exponents sooner), typed.
_number: Callable[[float], str] = floatToGoString


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


class _Format:
    """A family's exposition text, precomputed from its spec: what client_python's
    generate_latest writes (labels sorted by name, Go float formatting), at a fraction of the
    cost, since a render of thousands of series runs after every collector run."""

    def __init__(self, spec: MetricSpec) -> None:
        name = spec.exposed_name
        self.name = name
        self.header = (
            f"# HELP {name} {_escape_help(spec.help + SAMPLED_NOTE)}\n# TYPE {name} {spec.kind}\n"
        )
        ordered = sorted(enumerate(spec.labels), key=lambda pair: pair[1])
        self.labels = tuple((index, f'{label}="') for index, label in ordered)

    def line(self, value: float, label_values: Sequence[str]) -> str:
        if not self.labels:
            return f"{self.name} {_number(value)}\n"
        labels = '",'.join(head + _escape(label_values[i]) for i, head in self.labels)
        return f'{self.name}{{{labels}"}} {_number(value)}\n'


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


_FORMATS: dict[MetricSpec, _Format] = {}
# Each family's format by its name: a name is declared once (declare).
_FORMAT_BY_NAME: dict[str, _Format] = {}


def _format(spec: MetricSpec) -> _Format:
    fmt = _FORMATS.get(spec)
    if fmt is None:
        fmt = _FORMATS[spec] = _FORMAT_BY_NAME[spec.name] = _Format(spec)
    return fmt


K = TypeVar("K", bound=Hashable)

# A block's lines by family, families in the order the block first added them.
_Block = dict[str, tuple[str, ...]]
# Kept blocks no write asks for any more, at most (beyond the ones it asks for): each write
# keeps them all, and drops them all once there are this many.
_STALE_BLOCKS = 64
# A run: blocks that follow one another in a write, and their lines merged by family (a _Block
# of them all). Kept by the ids of its blocks, while it holds them (so no id is another's).
_Run = tuple[tuple[_Block, ...], _Block]
# A write's blocks are cut into runs after each block whose id says so (about one in
# _RUN_CUT): the same blocks in a row make the same runs write after write, and a container
# started or removed changes only the run it falls in. Fewer blocks are merged as they are.
_RUN_CUT = 7
_RUNS_FROM = 16


@dataclass
class Kept:
    """What a writer's write keeps for its next: its blocks by the function that wrote them and
    their key, and the runs they were merged in (Families.blocks_of)."""

    blocks: dict[Callable[..., None], dict[Hashable, _Block]] = field(default_factory=dict)
    runs: dict[Callable[..., None], dict[tuple[int, ...], _Run]] = field(default_factory=dict)


class Families:
    """One writer's samples, formatted as they are added; emits only families that got one.

    With max_series, a family stops taking series at that many and counts what it dropped: a
    host with ten thousand layers or veths must not blow up a Prometheus.

    kept: what this writer's last write kept (see blocks_of()), kept by the renderer.
    """

    def __init__(self, max_series: int | None = None, kept: Kept | None = None) -> None:
        self.lines: dict[str, tuple[_Format, list[str]]] = {}
        self.foreign: list[Metric] = []
        self._max_series = max_series
        self.dropped: dict[str, int] = {}
        self._last = kept or Kept()
        self.kept = Kept()  # this write's, for the next

    def add(self, spec: MetricSpec, value: float, *label_values: str) -> None:
        if len(label_values) != len(spec.labels):
            raise ValueError(f"{spec.name} takes labels {spec.labels}, got {label_values}")
        entry = self.lines.get(spec.name)
        if entry is None:
            entry = self.lines[spec.name] = (_format(spec), [])
        fmt, lines = entry
        cap = self._max_series
        if cap is None or len(lines) < cap or self._room(spec.name, lines, 1):
            lines.append(fmt.line(value, label_values))

    def _room(self, name: str, lines: list[str], wanted: int) -> int:
        """How many of `wanted` more series the family takes under the cap; the rest are
        counted as dropped."""
        room = wanted
        if self._max_series is not None and name != _SERIES_DROPPED_NAME:
            room = max(0, min(wanted, self._max_series - len(lines)))
        if room < wanted:
            self.dropped[name] = self.dropped.get(name, 0) + wanted - room
        return room

    def blocks_of(self, keys: Sequence[K], write: Callable[[K, Families], None]) -> None:
        """For each key in turn, the series write(key, families) adds (write: a module-level
        function; what it adds must depend on key alone): formatted once, and reused while the
        writer's next writes ask for an equal key. The output is what adding them one by one
        gives. A container started re-runs its writers for all 250 containers: the lookups
        run in C (map), only the new container's lines are formatted, and only the run of
        blocks it falls in is regrouped by family (_runs)."""
        made = self.kept.blocks.get(write)
        if made is None:
            # A copy of the last write's blocks keeps their keys' hashes: a key is hashed once
            # a write (its lookup), not again to be stored.
            made = self.kept.blocks[write] = dict(self._last.blocks.get(write, ()))
        found: list[_Block | None] = list(map(made.get, keys))
        fresh = found.count(None)
        if fresh:
            for index, kept in enumerate(found):
                if kept is None:
                    key = keys[index]
                    repeat = made.get(key)  # an equal key earlier in this write
                    found[index] = made[key] = _formatted(key, write) if repeat is None else repeat
        blocks = cast(list[_Block], found)
        if len(made) > len(keys) + _STALE_BLOCKS:
            # Blocks no write asked for again (a removed container's): dropped in one go.
            made.clear()
            made.update(zip(keys, blocks, strict=True))
        # Runs pay off when most of them are kept ones: not once new blocks are as many as runs
        # (about one in _RUN_CUT blocks: then most runs hold a new one, as when traffic moved on
        # every veth), nor for a few blocks.
        in_runs = len(blocks) >= _RUNS_FROM and fresh <= len(blocks) // _RUN_CUT
        merged = self._runs(write, blocks) if in_runs else blocks
        cap, families = self._max_series, self.lines
        # Family by family, in the order the sequence first names them: each family's lines
        # come out in key order, as when added block by block.
        for name, new in _by_family(merged).items():
            entry = families.get(name)
            if entry is None:
                entry = families[name] = (_FORMAT_BY_NAME[name], [])
            lines = entry[1]
            if cap is None or len(lines) + len(new) <= cap:
                lines.extend(new)
            else:
                lines.extend(new[: self._room(name, lines, len(new))])

    def _runs(self, write: Callable[..., None], blocks: list[_Block]) -> list[_Block]:
        """The blocks merged run by run (see _RUN_CUT), each run as the last write merged it
        while it holds the same blocks: after one container changed, a write merges one run's
        blocks, not all 250."""
        last = self._last.runs.get(write, {})
        runs = self.kept.runs.setdefault(write, {})
        merged: list[_Block] = []
        start = 0
        ids = list(map(id, blocks))
        cuts = [end for end, block in enumerate(ids, 1) if not (block >> 4) % _RUN_CUT]
        for end in (*cuts, len(blocks)):
            if end == start:
                continue
            key = tuple(ids[start:end])
            run = last.get(key) or runs.get(key)
            if run is None:
                part = tuple(blocks[start:end])
                run = (part, _by_family(part))
            runs[key] = run
            merged.append(run[1])
            start = end
        return merged

    def extend(self, metrics: Iterable[Metric]) -> None:
        """Families declared elsewhere by convention (client_python's process_* metrics)."""
        self.foreign.extend(metrics)


def _by_family(blocks: Sequence[_Block]) -> _Block:
    """Blocks' lines merged by family, families in the order the blocks first name them."""
    return {
        name: tuple(chain.from_iterable([block[name] for block in blocks if name in block]))
        for name in dict.fromkeys(chain.from_iterable(blocks))
    }


def _formatted(key: K, write: Callable[[K, Families], None]) -> _Block:
    part = Families()
    write(key, part)
    if part.foreign:
        raise ValueError("a block adds only declared families")
    return {name: tuple(lines) for name, (_, lines) in part.lines.items()}


FamilyWriter = Callable[[Snapshot, Families], None]


@dataclass(frozen=True)
class Writer:
    """A writer, and whether its output may be kept while what it read is unchanged.

    A cached writer must depend only on the collectors' facts it asks the snapshot for
    (current, last_good): the renderer watches which those are. The exporter's own health
    reads every collector's state and is written afresh (cached=False).
    """

    write: FamilyWriter
    cached: bool = True
    # Whose families it writes: if it raises, that collector is reported failed (success 0)
    # by the exporter's own health, and its families are left out of that render.
    collector: str | None = None


def _inputs(snapshot: Snapshot, reads: tuple[tuple[str, bool], ...]) -> tuple[object, ...]:
    """What a writer that read these collectors' facts (or counters) depends on. A run's state
    is new every time, but its facts are often equal to the last ones (an unchanged container
    list is the very same object): compared by value. Counters are compared only for writers
    that read them."""
    found: list[object] = []
    for name, counters in reads:
        state = snapshot.collectors.get(name)
        if state is None:
            found.append(None)
        else:
            found.append((state.success, state.counters if counters else state.facts))
    return tuple(found)


class Exposition:
    """One snapshot rendered once; every scrape until the next snapshot serves these bytes.
    Compressed on the first scrape that asks for gzip, not on every render."""

    def __init__(self, text: bytes) -> None:
        self.text = text
        self._gzipped: bytes | None = None
        self._lock = threading.Lock()

    @property
    def gzipped(self) -> bytes:
        with self._lock:
            if self._gzipped is None:
                self._gzipped = gzip.compress(self.text, compresslevel=6, mtime=0)
            return self._gzipped


@dataclass(frozen=True)
class _Written:
    """One writer's output, kept while its inputs are unchanged: its families' text as bytes
    (each family is written by one writer only, tests/unit/test_registration.py, so a writer's
    text is a run of whole families), what the cap dropped, and families declared elsewhere.
    Once rendered, the text is kept as a view of the exposition it went into (Renderer)."""

    text: bytes | memoryview
    dropped: dict[str, int]
    foreign: list[Metric]

    @classmethod
    def of(cls, families: Families) -> _Written:
        parts: list[str] = []
        for fmt, lines in families.lines.values():
            parts.append(fmt.header)
            parts.extend(lines)
        # A lone surrogate (a "\\ud800" escape in JSON) has no UTF-8: it becomes "?", not a crash.
        return cls("".join(parts).encode(errors="replace"), families.dropped, families.foreign)


class Renderer:
    """Renders snapshots to exposition bytes, writing again only the writers whose inputs
    changed: a network run re-formats the network's thousands of series, not the layers'. The
    others' text is reused as bytes, so a render is a join of a dozen chunks."""

    def __init__(self, writers: Sequence[Writer], max_series: int | None = None) -> None:
        self._writers = tuple(writers)
        self._max_series = max_series
        self._cache: dict[
            int, tuple[tuple[tuple[str, bool], ...], tuple[object, ...], _Written]
        ] = {}
        # What each cached writer's last write kept (Families.blocks_of): one write's blocks,
        # at most _STALE_BLOCKS more per block function, and the runs of that write.
        self._kept: dict[int, Kept] = {}
        # A writer that raises is logged (with its traceback) when it starts and when its
        # reason changes, and once when it writes again: not on every scrape.
        self._failures = ChangeLog(log, logging.ERROR)

    def _written(self, index: int, writer: Writer, snapshot: Snapshot) -> _Written:
        """A writer's output: the last one while the facts it read last time are unchanged
        (by value), else written again, watching what it reads."""
        if not writer.cached:
            families = Families(self._max_series)
            writer.write(snapshot, families)
            return _Written.of(families)
        cached = self._cache.get(index)
        if cached is not None:
            reads, inputs, written = cached
            now = _inputs(snapshot, reads)
            if now == inputs:
                # Kept as the objects they are now: facts equal to the last but another object
                # (a collector that read them again) are compared by value once, not on every
                # render after (a deep comparison: 0.2 ms for the layers' at 250 containers).
                self._cache[index] = (reads, now, written)
                return written
        watched = snapshot.watched()
        families = Families(self._max_series, self._kept.get(index))
        writer.write(watched, families)
        self._kept[index] = families.kept
        written = _Written.of(families)
        reads = tuple(sorted(watched.reads or ()))
        self._cache[index] = (reads, _inputs(snapshot, reads), written)
        return written

    def render(self, snapshot: Snapshot) -> bytes:
        chunks: list[bytes | memoryview] = []
        dropped: dict[str, int] = {}
        foreign: list[Metric] = []
        # What the uncached writers (the exporter's own health, written after the collectors')
        # are told: the snapshot, with each collector whose writer raised marked failed.
        reported = snapshot
        for index, writer in enumerate(self._writers):
            try:
                written = self._written(index, writer, snapshot if writer.cached else reported)
            except Exception as exc:  # one writer's bug must not fail every scrape
                # Its kept output is of other facts: dropped, or the views kept below would
                # make it empty.
                self._cache.pop(index, None)
                self._kept.pop(index, None)
                written = _Written(b"", {}, [])
                reason = f"{type(exc).__name__}: {exc}"
                reported = _render_failed(reported, writer.collector, reason)
                self._note(index, reason, exc)
            else:
                self._note(index, None)
            chunks.append(written.text)
            for name, count in written.dropped.items():
                dropped[name] = dropped.get(name, 0) + count
            foreign.extend(written.foreign)
        # The cap is Families.add's alone: a family is declared by one collector and written by
        # its writer only (tests/unit/test_registration.py), so no family here holds more.
        if dropped:
            tail = Families()
            for name, count in sorted(dropped.items()):
                tail.add(SERIES_DROPPED, count, name)
            chunks.append(_Written.of(tail).text)
        if foreign:
            chunks.append(generate_latest(_Registry(foreign)))
        exposition = b"".join(chunks)
        self._keep_as_views(exposition, [len(chunk) for chunk in chunks[: len(self._writers)]])
        return exposition

    def _note(self, index: int, reason: str | None, exc: BaseException | None = None) -> None:
        writer = self._writers[index]
        self._failures.update(
            str(index),
            reason,
            "metrics not rendered",
            "metrics rendered again",
            exc_info=exc,
            writer=str(getattr(writer.write, "__qualname__", index)),
            collector=writer.collector or "",
        )

    def _keep_as_views(self, exposition: bytes, sizes: list[int]) -> None:
        """Each cached writer's text kept as its slice of the exposition, not as bytes of its
        own: the text is held once (1.5 MB at 250 published ports), and the last exposition is
        let go once the next is rendered. The writers' texts come first, in order."""
        view = memoryview(exposition)
        start = 0
        for index, size in enumerate(sizes):
            cached = self._cache.get(index)
            if cached is not None:
                reads, inputs, written = cached
                text = view[start : start + size]
                self._cache[index] = (reads, inputs, replace(written, text=text))
            start += size


def _render_failed(snapshot: Snapshot, collector: str | None, reason: str) -> Snapshot:
    """The snapshot with this collector reported failed: its series are missing from the
    render, and the alerts that hold while it cannot judge must hold (success 0)."""
    state = snapshot.collectors.get(collector) if collector is not None else None
    if state is None:
        return snapshot
    return snapshot.with_state(replace(state, success=False, error=f"rendering failed: {reason}"))


@dataclass(frozen=True)
class _Registry:
    metrics: list[Metric]

    def collect(self) -> list[Metric]:
        return self.metrics


def render(
    snapshot: Snapshot, writers: Iterable[FamilyWriter], max_series: int | None = None
) -> bytes:
    """Renders one snapshot from scratch."""
    return Renderer([Writer(w, cached=False) for w in writers], max_series).render(snapshot)


SERIES_DROPPED = declare(
    _SERIES_DROPPED_NAME.removeprefix(PREFIX),
    "gauge",
    "Series the last exposition left out of this family, over --metrics.max-series-per-family.",
    ("family",),
    collector="exporter",
)
