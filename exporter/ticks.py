"""The scheduler tick a collector run belongs to. Collectors dispatched at the same tick may
share a reading (one /proc scan); a reading from an earlier tick is never passed off as new."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


def current() -> float | None:
    """The tick of the run on this thread; None outside a scheduled run (nothing is shared)."""
    tick: float | None = getattr(_local, "tick", None)
    return tick


@contextmanager
def running_in(tick: float) -> Iterator[None]:
    _local.tick = tick
    try:
        yield
    finally:
        _local.tick = None
