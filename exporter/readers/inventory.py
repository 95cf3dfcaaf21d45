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

import threading
import time
from collections.abc import Callable

from exporter.readers.docker_api import DockerReader, DockerUnavailable, EngineFacts, timed_out

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
        clock: Callable[[], float] = time.time,
        max_age: float = MAX_AGE,
    ) -> None:
        self.reader = reader
        self.clock = clock
        self.max_age = max_age
        # Held across a whole refresh: callers asking in the same moment share one list.
        self._lock = threading.Lock()
        self._last: tuple[EngineFacts, float, frozenset[tuple[int, float]]] | None = None
        self._checked: tuple[EngineFacts, float] | None = None

    def close(self) -> None:
        self.reader.close()

    def last(self) -> EngineFacts | None:
        """The last list taken, without asking dockerd anything: for a first look that only
        decides what to look at again."""
        last = self._last
        return last[0] if last is not None else None

    def last_checked(self) -> tuple[EngineFacts, float] | None:
        """The last list, and the last moment it was known to be current (listed then, or
        the event log showed no change up to then)."""
        return self._checked

    @property
    def base_url(self) -> str:
        return self.reader.base_url

    def current(
        self, dockerds: Callable[[], frozenset[tuple[int, float]]], wait: float | None = None
    ) -> EngineFacts:
        """Containers and networks as they are now: the last list if nothing changed since.

        dockerds gives the dockerd processes running now, by (pid, start time): a new one
        means a new event log. With wait, gives up after that long waiting for another
        caller's refresh.
        """
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            raise DockerUnavailable(timed_out(self.reader.base_url))
        try:
            return self._current(dockerds)
        except Exception:
            self._last = None  # what happened while the API failed is unknown: list again
            raise
        finally:
            self._lock.release()

    def _current(self, dockerds: Callable[[], frozenset[tuple[int, float]]]) -> EngineFacts:
        now = self.clock()
        daemons = dockerds()
        last = self._last
        if last is not None:
            facts, listed_at, daemons_then = last
            if (
                now - listed_at <= self.max_age
                and daemons == daemons_then
                and not self._changed_since(listed_at, now)
            ):
                self._checked = (facts, now)
                return facts
        listed_at = self.clock()
        facts = self.reader.read()
        self._last = (facts, listed_at, daemons)
        self._checked = (facts, listed_at)
        return facts

    def _changed_since(self, listed_at: float, now: float) -> bool:
        events = self.reader.events(since=listed_at - _MARGIN, until=now)
        if len(events) >= EVENT_LOG_SIZE:
            return True
        return any(
            e.get("Type") in _CHANGES and _event_time(e) >= listed_at - _MARGIN for e in events
        )


def _event_time(event: dict[str, object]) -> float:
    nanos = event.get("timeNano")
    if isinstance(nanos, int):
        return nanos / 1e9
    seconds = event.get("time")
    return float(seconds) if isinstance(seconds, int | float) else 0.0
