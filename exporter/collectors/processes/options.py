"""The processes collector's own flags."""

from __future__ import annotations

from exporter.options import Option, positive
from exporter.readers.procfs import DEFAULT_RESYNC_INTERVAL
from exporter.settings import parse_duration

RESYNC_INTERVAL = Option(
    "resync-interval",
    parse_duration,  # positive, or a ValueError
    DEFAULT_RESYNC_INTERVAL,
    check=positive,
    help="how often the /proc scan reads every process again while it follows the kernel's "
    "process events (the proc connector), a safety net for what they cannot say; without "
    "them every scan reads every process (default: 5m)",
)
