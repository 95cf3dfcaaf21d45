"""The daemon collector's own flags."""

from __future__ import annotations

from exporter.options import Option, positive
from exporter.settings import parse_duration

RESYNC_INTERVAL = Option(
    "resync-interval",
    parse_duration,  # positive, or a ValueError
    300.0,
    check=positive,
    help="dockerd's configuration (its files and GET /info) is read again at least this often, "
    "the safety net; otherwise only when dockerd, its daemon.json or its systemd unit changed "
    "or a daemon event (a reload) came on the followed event stream (default: 5m)",
)
