"""What the benchmarks share: real containers to measure against, and process accounting."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

IMAGE = "dhe-test/busybox:latest"
LABEL = "dhe-bench"
TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_ms_of(pid: int) -> float:
    """utime + stime of a process, in milliseconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICKS


def pid_of(comm: str) -> int:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(entry.path, "comm").read_text().strip() == comm:
                    return int(entry.name)
            except OSError:
                continue
    raise SystemExit(f"no {comm} running: run scripts/testbed.sh first")


def ensure_containers(client: Any, n: int, *, publish: bool = False) -> list[Any]:
    """Exactly n running benchmark containers (created or removed as needed); publish: each
    publishes 80/tcp on a host port of Docker's choosing (a DNAT, a MASQUERADE and a filter
    ACCEPT each, and docker-proxy processes) and serves on it (busybox httpd: a listener, so
    the port's verdict is ok, as on a healthy host). Containers of the other kind are removed."""
    running = client.containers.list(filters={"label": LABEL})
    kind = "published" if publish else "1"
    for other in [c for c in running if c.labels.get(LABEL) != kind]:
        other.remove(force=True)
    running = [c for c in running if c.labels.get(LABEL) == kind]
    for extra in running[n:]:
        extra.remove(force=True)
    for i in range(len(running), n):
        client.containers.run(
            IMAGE,
            ["httpd", "-f", "-p", "80"] if publish else ["sleep", "360000"],
            detach=True,
            labels={LABEL: kind},
            name=f"dhe-bench-{i}-{os.getpid()}",
            ports={"80/tcp": None} if publish else None,
        )
    time.sleep(1)  # let shims and veths settle
    return list(client.containers.list(filters={"label": LABEL}))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
