"""The fixed-interval sampler.

Each collector runs in a worker thread of its own, dispatched by one scheduler thread on the
collector's interval and abandoned (reported as failed) when it overruns its timeout, so a hung
source never holds up the others. A worker that is still stuck is not given a second job: a hung
Docker socket costs one thread, not one per interval. Every outcome is published as a new
immutable Snapshot, swapped in under a lock; the first scrape after it renders it to exposition
bytes once, and the scrapes after that serve those bytes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from exporter.changes import ChangeCounters
from exporter.collectors import CollectorDef, Source
from exporter.collectors.containers.options import LABELS, RESYNC_INTERVAL
from exporter.logonce import ChangeLog
from exporter.metrics import Exposition, Renderer, Writer
from exporter.selfmetrics import write_process_metrics, write_self_metrics
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Sampled, Snapshot
from exporter.tick import Host, Tick

log = logging.getLogger(__name__)


class SnapshotStore:
    """Holds the latest Snapshot and renders it to exposition bytes when they are asked for.

    A scrape that finds a newer snapshot than the last rendered one renders it (only the writers
    whose facts changed write again: metrics.Renderer); every scrape after it, until the next
    publish, serves those bytes. Rendering on publish instead rendered every snapshot, scraped
    or not: with samples every 2 s and scrapes every 15 s, seven renders for one scrape, and
    under container churn the render was the biggest cost of a change
    (docs/benchmarks.md). One render at a time: concurrent scrapes of a new snapshot wait for
    the first one's render and serve its bytes.
    """

    def __init__(
        self,
        writers: Sequence[Writer],
        max_series: int | None = None,
        changes: ChangeCounters | None = None,
    ) -> None:
        self._renderer = Renderer(
            (
                *writers,
                Writer(write_self_metrics, cached=False),
                *([Writer(changes.write, cached=False)] if changes is not None else []),
                Writer(write_process_metrics, cached=False),
            ),
            max_series,
        )
        self._lock = threading.Lock()
        self._snapshot = Snapshot()
        # The last render: the snapshot it was of, and its bytes. Written under _render_lock.
        self._rendered: tuple[Snapshot, Exposition] | None = None
        self._render_lock = threading.Lock()  # one render at a time: the renderer's cache
        self._published = threading.Condition(self._lock)
        # A collector's failure is logged once per change of reason, and its recovery once.
        self._transitions = ChangeLog(log, logging.ERROR)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def exposition(self) -> Exposition:
        """The newest snapshot's bytes: rendered now if no one asked since it was published. A
        reader that waited for another's render of the same snapshot gets that one's bytes."""
        with self._render_lock:
            with self._lock:
                snapshot = self._snapshot
            rendered = self._rendered
            if rendered is not None and rendered[0] is snapshot:
                return rendered[1]
            # Outside the state lock: publishing goes on while this renders. Renders take the
            # newest snapshot one at a time, so what is stored only ever gets newer.
            exposition = Exposition(self._renderer.render(snapshot))
            self._rendered = (snapshot, exposition)
            return exposition

    def publish(self, state: CollectorState) -> None:
        with self._lock:
            previous = self._snapshot.collectors.get(state.name)
            if not state.success and previous is not None:
                # Keep the last good facts (and when they were taken) for joins.
                state = CollectorState(
                    name=state.name,
                    success=False,
                    duration_seconds=state.duration_seconds,
                    last_success_time=previous.last_success_time,
                    facts=previous.facts,
                    error=state.error,
                    counters=previous.counters,
                )
            self._snapshot = self._snapshot.with_state(state)
            # Logged under the lock so transitions of one collector are never reordered.
            self._transitions.update(
                state.name,
                None if state.success else state.error or "failed",
                "collector failed",
                "collector recovered",
                collector=state.name,
            )
            self._published.notify_all()

    def wait(self, predicate: Callable[[Snapshot], bool], timeout: float) -> bool:
        with self._published:
            return self._published.wait_for(lambda: predicate(self._snapshot), timeout)


@dataclass
class _Worker:
    definition: CollectorDef
    source: Source
    interval: float
    timeout: float
    store: SnapshotStore
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.jobs: queue.SimpleQueue[tuple[int, Tick] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.generation = 0
        self.busy_since: float | None = None  # monotonic
        self.abandoned = False
        self.next_due = 0.0  # monotonic; set by Sampler.start
        self.thread = threading.Thread(
            target=self._loop, name=f"collector-{self.definition.name}", daemon=True
        )

    @property
    def name(self) -> str:
        return self.definition.name

    def dispatch(self, tick: Tick) -> bool:
        with self.lock:
            if self.busy_since is not None:
                return False  # still stuck in an abandoned run: do not queue another
            self.generation += 1
            self.busy_since, self.abandoned = tick.at, False
            self.jobs.put((self.generation, tick))
            return True

    def check_timeout(self, now: float) -> None:
        with self.lock:
            if self.busy_since is None or self.abandoned or now - self.busy_since < self.timeout:
                return
            self.abandoned = True
        self.store.publish(
            CollectorState(
                name=self.name,
                success=False,
                duration_seconds=self.timeout,
                error=f"timed out after {self.timeout:g}s",
            )
        )

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            generation, tick = job
            # When the run began: facts are no older than this, so joins against them (is this
            # shim's container in the list?) only trust them for what existed by then.
            began = self.clock()
            started = time.perf_counter()
            facts: object | None = None
            counters: object | None = None
            error: str | None = None
            try:
                read = self.source.read(tick)  # collectors of one tick share its readings
                if isinstance(read, Sampled):
                    facts, counters = read.facts, read.counters
                else:
                    facts = read
            except Exception as exc:  # a collector's failure must never reach the others
                error = str(exc) or type(exc).__name__
                log.debug("collector %s raised", self.name, exc_info=True)
            duration = time.perf_counter() - started
            with self.lock:
                late = self.abandoned or generation != self.generation
                self.busy_since = None
            if late:
                continue  # its timeout was already reported; a late answer is stale
            self.store.publish(
                CollectorState(
                    name=self.name,
                    success=error is None,
                    duration_seconds=duration,
                    last_success_time=began if error is None else None,
                    facts=facts,
                    error=error,
                    counters=counters,
                )
            )

    def stop(self) -> None:
        self.jobs.put(None)


class Sampler:
    def __init__(
        self,
        collectors: Iterable[tuple[CollectorDef, Source]],
        settings: Settings,
        store: SnapshotStore | None = None,
        host: Host | None = None,
    ) -> None:
        pairs = list(collectors)
        # The readers the collectors share; owned, and closed, here.
        self.host = host or Host.open(
            str(settings.procfs),
            settings.docker_host,
            settings.call_timeout("containers"),
            settings[LABELS],
            settings[RESYNC_INTERVAL],
        )
        self.store = store or SnapshotStore(
            [w for d, _ in pairs for w in d.writers(settings)],
            settings.max_series_per_family or None,
            self.host.changes,
        )
        self._workers = [
            _Worker(d, s, settings.interval(d.name), settings.timeout(d.name), self.store)
            for d, s in pairs
        ]
        self._stop = threading.Event()
        self._scheduler = threading.Thread(target=self._schedule, name="scheduler", daemon=True)

    def start(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            worker.next_due = now  # first run at once, then every interval from here
            worker.thread.start()
        self._scheduler.start()

    def healthy(self) -> bool:
        return self._scheduler.is_alive()

    def _schedule(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            tick = self.host.tick(now)  # what the collectors due now share
            for worker in self._workers:
                worker.check_timeout(now)
                if now >= worker.next_due:
                    worker.dispatch(tick)
                    # Fixed-rate schedule; after a long stall, skip the missed runs.
                    worker.next_due = max(worker.next_due + worker.interval, now)
            wakeups = [w.next_due for w in self._workers] + [
                w.busy_since + w.timeout
                for w in self._workers
                if w.busy_since is not None and not w.abandoned
            ]
            self._stop.wait(max(0.0, min(wakeups, default=1.0) - time.monotonic()) + 0.001)

    def sample_once(self) -> Snapshot:
        """Run every collector once, each under its timeout; for `inspect` and tests."""
        tick = self.host.tick()
        for worker in self._workers:
            worker.thread.start()
            worker.dispatch(tick)
        deadline = time.monotonic() + max((w.timeout for w in self._workers), default=0)
        names = {w.name for w in self._workers}
        self.store.wait(lambda s: names <= s.collectors.keys(), deadline - time.monotonic())
        for worker in self._workers:
            worker.check_timeout(time.monotonic() + worker.timeout)
        self.stop()
        return self.store.snapshot

    def stop(self, join_timeout: float = 2.0) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.stop()
        if self._scheduler.is_alive():
            self._scheduler.join(join_timeout)
        # A run in progress finishes first: closing its source under it (a netlink socket) made
        # it fail with EBADF on the way out. A worker stuck in a hung source is left after the
        # shared deadline with its source open: it is a daemon thread, and the process is ending.
        deadline = time.monotonic() + join_timeout
        for worker in self._workers:
            if worker.thread.is_alive():
                worker.thread.join(max(0.0, deadline - time.monotonic()))
            if not worker.thread.is_alive():
                worker.source.close()
        if not any(worker.thread.is_alive() for worker in self._workers):
            self.host.close()
