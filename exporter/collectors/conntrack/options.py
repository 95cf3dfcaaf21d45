"""The conntrack collector's own flags."""

from __future__ import annotations

from exporter.options import Option, at_least_one

MAX_ENTRIES = Option(
    "max-entries",
    int,
    250000,
    check=at_least_one,
    help="entries the ctnetlink dump reads per run at most; the rest are counted in "
    "docker_host_conntrack_dump_skipped_entries (default: 250000)",
)
