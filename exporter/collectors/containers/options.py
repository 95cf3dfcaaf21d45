"""The containers collector's own flags."""

from __future__ import annotations

from exporter.options import Option
from exporter.settings import parse_label_allowlist

LABELS: Option[tuple[str, ...]] = Option(
    "labels",
    parse_label_allowlist,
    (),
    help="Docker label keys to export, comma-separated, as label_<key> on "
    "docker_host_container_labels; no label is exported unless named here (default: none)",
)
