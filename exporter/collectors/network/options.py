"""The network collector's own flags."""

from __future__ import annotations

from exporter.options import Option, positive
from exporter.settings import parse_duration

RESYNC_INTERVAL = Option(
    "resync-interval",
    parse_duration,  # positive, or a ValueError
    300.0,
    check=positive,
    help="How often the links, veth peers and namespace owners are all read again whatever "
    "rtnetlink's notifications said: the safety net for what no notification tells, such as "
    "a process joining a namespace no container explains (default: 5m)",
)
