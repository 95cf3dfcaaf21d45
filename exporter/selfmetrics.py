"""The exporter's own health: per-collector success, duration and last success, and build info."""

from __future__ import annotations

from prometheus_client import ProcessCollector

from exporter import __version__
from exporter.metrics import Families, declare
from exporter.snapshot import Snapshot

SUCCESS = declare(
    "collector_success",
    "gauge",
    "1 when the collector's last run succeeded, 0 when it failed, timed out or its series "
    "could not be written (reason in the log).",
    ("collector",),
    collector="exporter",
)
DURATION = declare(
    "collector_duration_seconds",
    "gauge",
    "How long the collector's last run took.",
    ("collector",),
    collector="exporter",
)
LAST_SUCCESS = declare(
    "collector_last_success_timestamp_seconds",
    "gauge",
    "When the collector's last successful run began, as Unix time; absent until it first succeeds.",
    ("collector",),
    collector="exporter",
)
PRIVILEGE_MISSING = declare(
    "privilege_missing",
    "gauge",
    "1 while a collector's last run was refused something for lack of this capability; what "
    "degrades is in the README's privileges table.",
    ("collector", "capability"),
    collector="exporter",
)
BUILD_INFO = declare(
    "exporter_build_info",
    "gauge",
    "The exporter's version; 1.",
    ("version",),
    collector="exporter",
)


# The exporter's own process_* metrics (RSS, CPU, open fds), read when a snapshot is rendered
# (by the first scrape after a sample), not again by the scrapes that serve the same bytes.
# registry=None: rendered by us, not by client_python's global registry.
_PROCESS = ProcessCollector(registry=None)


def write_self_metrics(snapshot: Snapshot, out: Families) -> None:
    for name, state in sorted(snapshot.collectors.items()):
        out.add(SUCCESS, int(state.success), name)
        out.add(DURATION, state.duration_seconds, name)
        if state.last_success_time is not None:
            out.add(LAST_SUCCESS, state.last_success_time, name)
    out.add(BUILD_INFO, 1, __version__)


def write_process_metrics(_snapshot: Snapshot, out: Families) -> None:
    out.extend(_PROCESS.collect())
