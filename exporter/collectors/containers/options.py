"""The containers collector's own flags."""

from __future__ import annotations

from exporter.options import Option, positive
from exporter.settings import parse_duration, parse_label_allowlist

LABELS: Option[tuple[str, ...]] = Option(
    "labels",
    parse_label_allowlist,
    (),
    help="Docker label keys to export, comma-separated, as label_<key> on "
    "docker_host_container_labels; no label is exported unless named here (default: none)",
)

RESYNC_INTERVAL = Option(
    "resync-interval",
    parse_duration,  # positive, or a ValueError
    300.0,
    check=positive,
    help="the container and network lists are taken again at least this often, the safety "
    "net under dockerd's followed event stream (otherwise they are taken only after an event "
    "or a broken stream) (default: 5m)",
)
