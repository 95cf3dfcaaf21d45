"""The ports collector's own flags."""

from __future__ import annotations

from exporter.options import Option, positive
from exporter.settings import parse_duration

LISTENER_BUDGET = Option(
    "listener-budget",
    parse_duration,  # positive, or a ValueError
    0.006,
    check=positive,
    help="CPU time a run spends at most reading containers' /proc/PID/net for listeners "
    "(each read of tcp or tcp6 walks the kernel's whole TCP hash, ~1.7 ms with 262144 "
    "buckets): containers never read come first, then those read longest ago; the "
    "rest keep their last reading (default: 6ms)",
)
