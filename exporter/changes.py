"""How often change-driven sampling had to read everything again, and why.

Collectors that re-read only what the kernel or the engine says changed (netlink multicast
groups, the proc connector, the Engine API's event stream) still read everything at times: at
start, on their safety-net period, when events were lost (a netlink socket overflowed with
ENOBUFS, an event stream was cut), or after an error. Counting those says whether the change
feed can be trusted on this host: a steady rise of lost events means the host changes faster
than the exporter follows, and every run is a full one.
"""

from __future__ import annotations

import threading
from typing import Literal, get_args

from exporter.metrics import Families, declare
from exporter.snapshot import Snapshot

RereadReason = Literal["start", "resync", "lost_events", "error"]

FULL_REREADS = declare(
    "full_rereads",
    "counter",
    "Times a change-driven collector read everything again instead of only what changed, by "
    "reason: start, resync (its --collector.<name>.resync-interval), lost_events (its change "
    "feed overflowed or was cut), error.",
    ("collector", "reason"),
    collector="exporter",
)
EVENTS_LOST = declare(
    "change_events_lost",
    "counter",
    "Times a collector's change feed lost events (a netlink socket overflowed with ENOBUFS, the "
    "Engine API's event stream was cut); each is followed by a full re-read.",
    ("collector",),
    collector="exporter",
)


class ChangeCounters:
    """The counts, kept by the host the collectors share; written with the exporter's health."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rereads: dict[tuple[str, str], int] = {}
        self._lost: dict[str, int] = {}

    def reread(self, collector: str, reason: RereadReason) -> None:
        with self._lock:
            if reason == "start":
                # A change-driven collector's first run: every count it may have starts at 0,
                # so that the first lost event is an increase Prometheus sees.
                for each in get_args(RereadReason):
                    self._rereads.setdefault((collector, each), 0)
                self._lost.setdefault(collector, 0)
            key = (collector, reason)
            self._rereads[key] = self._rereads.get(key, 0) + 1

    def lost(self, collector: str) -> None:
        """Events were lost; the full re-read that follows is counted by reread()."""
        with self._lock:
            self._lost[collector] = self._lost.get(collector, 0) + 1

    def rereads(self, collector: str, reason: RereadReason) -> int:
        with self._lock:
            return self._rereads.get((collector, reason), 0)

    def lost_count(self, collector: str) -> int:
        with self._lock:
            return self._lost.get(collector, 0)

    def write(self, _snapshot: Snapshot, out: Families) -> None:
        with self._lock:
            rereads, lost = sorted(self._rereads.items()), sorted(self._lost.items())
        for (collector, reason), count in rereads:
            out.add(FULL_REREADS, count, collector, reason)
        for collector, count in lost:
            out.add(EVENTS_LOST, count, collector)
