"""Read, judge, wait, read again: what a collector reports as broken must look broken in two
readings a moment apart. Docker builds and tears down its plumbing in steps (a veth pair is
made on the host, then one end is moved into the container; a network's rules are written one
by one), and a single reading often lands between two steps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F")
K = TypeVar("K")


def confirm_wait(confirm_after: float, timeout: float) -> float:
    """How long a source waits before its confirming second reading: confirm_after, but within
    a quarter of the run's timeout, so that both readings and the judging fit in the run."""
    return min(confirm_after, timeout / 4)


def read_twice(
    first: F,
    suspects: Callable[[F], tuple[K, ...]],
    again: Callable[[], F],
    confirm: Callable[[F, tuple[K, ...]], F],
    wait: float,
) -> F:
    """first, when nothing in it looks broken; else a second reading taken `wait` seconds
    later, told (by `confirm`) what the first one suspected, so that only what both readings
    show is reported."""
    found = suspects(first)
    if not found:
        return first
    time.sleep(wait)
    return confirm(again(), found)
