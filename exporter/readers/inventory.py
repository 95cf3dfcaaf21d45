"""The Engine API's container and network lists, shared by the collectors that need them and
listed again only when Docker says something changed.

Listing 250 containers costs dockerd about 20 ms of CPU, and asking its event log every run
(a finite GET /events) cost this process ~3.8 ms a call. So a thread of the inventory's own
follows one GET /events held open: dockerd sends each container, network and daemon event as
it happens, and an unchanged host costs a run no list and no event-log call, only a GET /_ping
(that dockerd answers at all: a hung daemon fails the run as before, instead of its last list
passing for current).

After container and network events the lists are brought up to date, not taken again: each
container an event names is asked for alone (the list endpoint filtered by its id: the very
record a full list holds; none listed: removed), a network connect or disconnect names its
container, and other network events take GET /networks again. The lists are taken in full:
- after an event that names no container precisely (an unreadable line, a prune), after more
  containers changed than asking each is worth (_MAX_ASKED), or when an answer for one
  container was malformed (logged, counted as an error);
- when the stream broke (dockerd restarted, the socket closed, an error) and was followed
  again: what happened in between is unknown (counted as lost events);
- at least every max_age seconds (--collector.containers.resync-interval), the safety net.
While no stream is followed (dockerd down or hanging, the stream not yet answered), each run
asks the event log as before: since the last list, until now, and lists again if anything
happened, if it holds as many events as dockerd keeps (256), or if the dockerd processes
changed (a restart starts a new event log).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from exporter.readers.docker_api import (
    BadAnswer,
    DockerReader,
    DockerUnavailable,
    EngineFacts,
    EventFeed,
    by_name,
    timed_out,
)

log = logging.getLogger(__name__)

MAX_AGE = 300.0
# dockerd's in-memory event log (daemon/events: eventsLimit).
EVENT_LOG_SIZE = 256
# Events stamped up to this long before a list may not show in it yet.
_MARGIN = 1.0
_CHANGES = frozenset({"container", "network"})
_FOLLOWED = {"type": ["container", "network", "daemon"]}
# Container actions that change nothing a list shows (state, name, ports, addresses, labels):
# health checks and execs come every few seconds on some hosts.
_UNLISTED_PREFIXES = ("exec_", "health_status")
_UNLISTED = frozenset({"top", "resize", "attach", "detach", "archive-path", "extract-to-dir"})
# How long the first run waits for the stream to answer, so that it lists once, not twice.
_FIRST_WAIT = 0.5
# Between attempts to follow the stream again while dockerd does not answer it.
_RETRY_MIN, _RETRY_MAX = 0.5, 10.0
_LIVED = 60.0
_CLOSE_WAIT = 2.0
# Past this many containers changed since the last run, one list costs less than asking each.
_MAX_ASKED = 32
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")

# Why a list was taken anew (docker_host_full_rereads_total's reasons); a list after an event
# is change-driven, not a full re-read, and is not counted.
Reason = Literal["start", "resync", "lost_events", "error"]
START: Reason = "start"
RESYNC: Reason = "resync"
LOST: Reason = "lost_events"
ERROR: Reason = "error"


def _ignore(_reason: Reason) -> None:
    pass


@dataclass(frozen=True)
class StreamState:
    """What the followed stream has said: which connection (epoch, 0 while none answered yet)
    and how many events of each kind it carried. None of it while no stream is followed."""

    epoch: int
    lists: int  # container and network events
    daemon: int  # daemon events (reload)


@dataclass
class Pending:
    """What the stream's events since the lists were last brought up to date ask of them."""

    containers: set[str] = field(default_factory=set)  # ids to ask for again
    networks: bool = False  # GET /networks again
    everything: bool = False  # a full list

    def add(self, change: Change) -> None:
        if change == EVERYTHING:
            self.everything = True
        elif change == NETWORKS:
            self.networks = True
        elif change is not None:
            self.containers.add(change)


# What one event asks of the lists: nothing (None), one container's id, the networks, or all.
Change = str | None
NETWORKS: Change = "networks"
EVERYTHING: Change = "everything"


@dataclass(frozen=True)
class _Listing:
    facts: EngineFacts
    at: float
    daemons: frozenset[tuple[int, float]] | None  # None: listed while the stream was followed
    stream: StreamState | None


class DockerInventory:
    def __init__(
        self,
        reader: DockerReader,
        clock: Callable[[], float] = time.time,
        max_age: float = MAX_AGE,
        *,
        follow: bool = True,
        reread: Callable[[Reason], None] = _ignore,
        lost: Callable[[], None] = lambda: None,
    ) -> None:
        """follow: follow dockerd's event stream (else ask the event log every run).
        reread(reason) and lost() count full lists and broken streams."""
        self.reader = reader
        self.clock = clock
        self.max_age = max_age
        self.reread = reread
        self.lost = lost
        # Held across a whole refresh: callers asking in the same moment share one list.
        self._lock = threading.Lock()
        self._last: _Listing | None = None
        self._checked: tuple[EngineFacts, float] | None = None
        self._failed = False
        # The stream's state, written by its thread; a lock of its own, never held blocked.
        self._follow = follow
        self._state_lock = threading.Lock()
        self._state: StreamState | None = None
        self._pending = Pending()  # of the followed stream's events not yet applied
        self._epochs = 0
        self._feed: EventFeed | None = None
        self._answered = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def close(self) -> None:
        self._stop.set()
        with self._state_lock:
            feed, thread = self._feed, self._thread
        if feed is not None:
            feed.interrupt()
        if thread is not None:
            # Interrupted, it ends at once. Waiting for a hung dockerd's answer headers, it ends
            # by itself at the reader's timeout: shutting down does not wait for that.
            thread.join(timeout=_CLOSE_WAIT)
        self.reader.close()

    def count(self, reread: Callable[[Reason], None], lost: Callable[[], None]) -> None:
        """Where full lists (by reason) and broken streams are counted."""
        self.reread, self.lost = reread, lost

    def last(self) -> EngineFacts | None:
        """The last list taken, without asking dockerd anything: for a first look that only
        decides what to look at again."""
        last = self._last
        return last.facts if last is not None else None

    def last_checked(self) -> tuple[EngineFacts, float] | None:
        """The last list, and the last moment it was known to be current (listed then, or
        nothing changed up to then)."""
        return self._checked

    @property
    def base_url(self) -> str:
        return self.reader.base_url

    def stream(self) -> StreamState | None:
        """What the followed event stream has said so far; None while none is followed (then
        nothing can be told from it). Starts following it if not yet done."""
        self._start()
        with self._state_lock:
            return self._state

    def current(
        self, dockerds: Callable[[], frozenset[tuple[int, float]]], wait: float | None = None
    ) -> EngineFacts:
        """Containers and networks as they are now: the last list if nothing changed since.

        dockerds gives the dockerd processes running now, by (pid, start time): a new one
        means a new event log. Asked only while no stream is followed. With wait, gives up
        after that long waiting for another caller's refresh.
        """
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            raise DockerUnavailable(timed_out(self.reader.base_url))
        try:
            return self._current(dockerds)
        except Exception:
            self._last = None  # what happened while the API failed is unknown: list again
            self._failed = True
            raise
        finally:
            self._lock.release()

    def _current(self, dockerds: Callable[[], frozenset[tuple[int, float]]]) -> EngineFacts:
        if self._start():
            self._answered.wait(min(_FIRST_WAIT, self.reader.timeout))
        now = self.clock()
        with self._state_lock:
            # Taken together: the events counted up to this state are the ones pending now.
            stream, pending = self._state, self._pending
            self._pending = Pending()
        last = self._last
        daemons = None
        if last is not None and now - last.at <= self.max_age:
            if stream is not None and stream == last.stream:
                self.reader.ping()
                self._checked = (last.facts, now)
                return last.facts
            if (
                stream is not None
                and last.stream is not None
                and stream.epoch == last.stream.epoch
                and not pending.everything
                and len(pending.containers) <= _MAX_ASKED
            ):
                applied_at = self.clock()
                facts = self._apply(last.facts, pending)
                if facts is not None:
                    self._last = _Listing(facts, last.at, None, stream)
                    self._checked = (facts, applied_at)
                    return facts
                self.reread(ERROR)
                return self._list(None, stream)
            if stream is None:
                daemons = dockerds()
                if daemons == last.daemons and not self._changed_since(last.at, now):
                    self._checked = (last.facts, now)
                    return last.facts
        if stream is None and daemons is None:
            daemons = dockerds()
        reason = self._reason(last, stream, now)
        facts = self._list(daemons, stream)
        if reason is not None:
            self.reread(reason)
        return facts

    def _list(
        self, daemons: frozenset[tuple[int, float]] | None, stream: StreamState | None
    ) -> EngineFacts:
        listed_at = self.clock()
        facts = self.reader.read()
        self._failed = False
        self._last = _Listing(facts, listed_at, daemons, stream)
        self._checked = (facts, listed_at)
        return facts

    def _apply(self, facts: EngineFacts, pending: Pending) -> EngineFacts | None:
        """The lists with what the events named asked for again; the same object when nothing
        a list shows changed. None when an answer was malformed (then a full list is taken).
        The list's age (max_age) still runs from the last full list: the safety net."""
        if not (pending.containers or pending.networks):
            self.reader.ping()  # only daemon events came: that dockerd answers, as when idle
            return facts
        by_id = {c.id: c for c in facts.containers}
        try:
            for container_id in sorted(pending.containers):
                record = self.reader.read_container(container_id)
                if record is None:
                    by_id.pop(container_id, None)  # removed
                else:
                    by_id[container_id] = record
            networks = self.reader.read_networks() if pending.networks else facts.networks
        except BadAnswer as exc:
            log.warning("docker at %s: %s; listing every container", self.base_url, exc)
            return None
        containers = tuple(sorted(by_id.values(), key=by_name))
        if containers == facts.containers and networks == facts.networks:
            return facts
        return replace(facts, containers=containers, networks=networks)

    def _reason(
        self, last: _Listing | None, stream: StreamState | None, now: float
    ) -> Reason | None:
        """Why the lists are taken again, if it is a full re-read (not an event's doing)."""
        if last is None:
            return ERROR if self._failed else START
        if now - last.at > self.max_age:
            return RESYNC
        if stream is not None and (last.stream is None or last.stream.epoch != stream.epoch):
            # Followed again after a break (the first stream: not a loss, a start).
            return START if last.stream is None and stream.epoch == 1 else LOST
        return None

    def _changed_since(self, listed_at: float, now: float) -> bool:
        events = self.reader.events(since=listed_at - _MARGIN, until=now)
        if len(events) >= EVENT_LOG_SIZE:
            return True
        return any(
            e.get("Type") in _CHANGES and _event_time(e) >= listed_at - _MARGIN for e in events
        )

    # -- the stream's thread ------------------------------------------------------------------

    def _start(self) -> bool:
        """Starts following the stream, once; whether this call started it."""
        with self._state_lock:
            if not self._follow or self._thread is not None or self._stop.is_set():
                return False
            self._thread = threading.Thread(target=self._run, name="docker events", daemon=True)
            self._thread.start()
            return True

    def _run(self) -> None:
        retry = _RETRY_MIN
        while not self._stop.is_set():
            try:
                feed = self.reader.follow_events(_FOLLOWED)
            except Exception:  # unavailable, or a transport whose socket is not found: poll
                self._answered.set()  # the first run waits no longer: it asks the log
                self._stop.wait(retry)
                retry = min(retry * 2, _RETRY_MAX)
                continue
            followed_at = time.monotonic()
            with self._state_lock:
                self._feed = feed
                self._epochs += 1
                # Anything before this moment is in a list taken from now on.
                self._state = StreamState(self._epochs, 0, 0)
                self._pending = Pending()
            self._answered.set()
            if self._stop.is_set():
                feed.interrupt()
            try:
                for line in feed.lines():
                    self._saw(line)
            except DockerUnavailable:
                pass  # broken: as ended
            finally:
                with self._state_lock:
                    self._feed = None
                    self._state = None
                    self._pending = Pending()
                feed.close()
            if self._stop.is_set():
                return
            self.lost()
            # A stream that keeps ending at once (a proxy that cuts it) is followed again ever
            # less often, not in a loop; one that lived a while, at once.
            if time.monotonic() - followed_at > _LIVED:
                retry = _RETRY_MIN
            else:
                self._stop.wait(retry)
                retry = min(retry * 2, _RETRY_MAX)

    def _saw(self, line: bytes | None) -> None:
        event = _event(line)
        lists, daemon = _kinds(event)
        if not (lists or daemon):
            return
        with self._state_lock:
            state = self._state
            if state is not None:
                self._state = StreamState(state.epoch, state.lists + lists, state.daemon + daemon)
                if lists:
                    self._pending.add(change_of(event))


def _event(line: bytes | None) -> dict[str, object] | None:
    """An event line as JSON; None for one that cannot be read (or was too long to keep)."""
    try:
        event = json.loads(line) if line is not None else None
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _kinds(event: dict[str, object] | None) -> tuple[int, int]:
    """(list changes, daemon changes) one event says: both for one that cannot be read."""
    if event is None:
        return 1, 1
    kind, action = event.get("Type"), event.get("Action")
    if kind == "daemon":
        return 0, 1
    if (
        kind == "container"
        and isinstance(action, str)
        and (action in _UNLISTED or action.startswith(_UNLISTED_PREFIXES))
    ):
        return 0, 0
    return (1, 0) if kind in _CHANGES else (0, 0)


def change_of(event: dict[str, object] | None) -> Change:
    """What a container or network event asks of the lists: its container, precisely named by
    a full id, asked for again; the networks listed again; else (a prune, an unreadable event)
    everything listed again."""
    if event is None:
        return EVERYTHING
    actor = event.get("Actor")
    actor = actor if isinstance(actor, dict) else {}
    attributes = actor.get("Attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    kind, action = event.get("Type"), event.get("Action")
    if kind == "container":
        named = actor.get("ID")
    elif kind == "network" and action in ("connect", "disconnect"):
        named = attributes.get("container")
    elif kind == "network" and isinstance(action, str):
        return NETWORKS  # create, destroy, remove, prune: no container's record changes
    else:
        return EVERYTHING
    if isinstance(named, str) and _CONTAINER_ID.fullmatch(named):
        return named
    return EVERYTHING


def _event_time(event: dict[str, object]) -> float:
    nanos = event.get("timeNano")
    if isinstance(nanos, int):
        return nanos / 1e9
    seconds = event.get("time")
    return float(seconds) if isinstance(seconds, int | float) else 0.0
