"""The Engine API's container and network lists, shared by the collectors that need them and
listed again only when Docker says something changed.

Listing 250 containers costs dockerd about 20 ms of CPU, and the containers and nat collectors
each listed them on every interval. Every change to a container or network (create, start,
die, rename, connect, ...) is an event in dockerd's event log, so each run asks the log, a
finite GET /events with since/until that costs dockerd next to nothing, what happened since
the last list, and lists again only if anything did. The lists are also taken again:
- when the answer holds as many events as dockerd keeps (256): some may have been dropped;
- when the dockerd processes change (a restart starts a new event log, and containers that
  died with the old daemon left their events in it);
- at least every MAX_AGE seconds, so a missed event costs at most that long.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

from exporter import ticks
from exporter.facts import EngineFacts
from exporter.readers.docker_api import DockerReader, DockerUnavailable, timed_out
from exporter.readers.procfs import ProcfsError, shared_reader

MAX_AGE = 300.0
# dockerd's in-memory event log (daemon/events: eventsLimit).
EVENT_LOG_SIZE = 256
# Events stamped up to this long before a list may not show in it yet.
_MARGIN = 1.0
_CHANGES = frozenset({"container", "network"})


class DockerInventory:
    def __init__(
        self,
        reader: DockerReader,
        procfs: str,
        clock: Callable[[], float] = time.time,
        max_age: float = MAX_AGE,
    ) -> None:
        self.reader = reader
        self.procfs = procfs
        self.clock = clock
        self.max_age = max_age
        # Held across a whole refresh: collectors asking in the same moment share one list.
        self._lock = threading.Lock()
        self._last: tuple[EngineFacts, float, frozenset[tuple[int, float]]] | None = None
        # The tick's answer: the facts, or the reason the Engine API failed.
        self._tick_answer: tuple[float | None, EngineFacts | str] | None = None

    def close(self) -> None:
        self.reader.close()

    def last(self) -> EngineFacts | None:
        """The last list taken, without asking dockerd anything: for a first look that only
        decides what to look at again."""
        last = self._last
        return last[0] if last is not None else None

    def current(self, wait: float | None = None, share: bool = True) -> EngineFacts:
        """Containers and networks as they are now: the last list if nothing changed since.

        Collectors of one scheduler tick share one answer, a failure included, so they report
        the same reason; share=False asks the event log again (a confirming second look later
        in the tick). With wait, a collector gives up waiting for another one's call after
        that long (a daemon that stopped answering holds it until that call's own timeout).
        """
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            raise DockerUnavailable(timed_out(self.reader.base_url))
        try:
            tick = ticks.current()
            answered = self._tick_answer
            if share and tick is not None and answered is not None and answered[0] == tick:
                answer = answered[1]
                if isinstance(answer, str):
                    raise DockerUnavailable(answer)
                return answer
            try:
                facts = self._current()
            except Exception as exc:
                self._last = None  # what happened while the API failed is unknown: list again
                if isinstance(exc, DockerUnavailable):
                    self._tick_answer = (tick, str(exc))  # the reason, not a traceback to keep
                raise
            self._tick_answer = (tick, facts)
            return facts
        finally:
            self._lock.release()

    def _current(self) -> EngineFacts:
        now = self.clock()
        daemons = self._daemons()
        last = self._last
        if last is not None:
            facts, listed_at, daemons_then = last
            if (
                now - listed_at <= self.max_age
                and daemons == daemons_then
                and not self._changed_since(listed_at, now)
            ):
                return facts
        listed_at = self.clock()
        facts = self.reader.read()
        self._last = (facts, listed_at, daemons)
        return facts

    def _changed_since(self, listed_at: float, now: float) -> bool:
        events = self.reader.events(since=listed_at - _MARGIN, until=now)
        if len(events) >= EVENT_LOG_SIZE:
            return True
        return any(
            e.get("Type") in _CHANGES and _event_time(e) >= listed_at - _MARGIN for e in events
        )

    def _daemons(self) -> frozenset[tuple[int, float]]:
        """The dockerd processes running, by (pid, start time); empty if /proc says nothing."""
        try:
            scan = shared_reader(self.procfs).scan(shared_with="inventory")
        except (ProcfsError, OSError):
            return frozenset()  # no /proc to watch: the event log and MAX_AGE still hold
        return frozenset((d.pid, d.start_time) for d in scan.daemons if d.name == "dockerd")


def _event_time(event: dict[str, object]) -> float:
    nanos = event.get("timeNano")
    if isinstance(nanos, int):
        return nanos / 1e9
    seconds = event.get("time")
    return float(seconds) if isinstance(seconds, int | float) else 0.0


@functools.cache
def shared_inventory(
    docker_host: str, procfs: str, timeout: float, label_keys: tuple[str, ...] = ()
) -> DockerInventory:
    """The one inventory of a Docker host in this process, for every collector that reads it."""
    return DockerInventory(DockerReader(docker_host, timeout, label_keys), procfs)
