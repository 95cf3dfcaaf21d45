"""What the benchmarks share: real containers to measure against, and process accounting."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

IMAGE = "dhe-test/busybox:latest"
LABEL = "dhe-bench"
PUBLISHED_LABEL = "dhe-bench-published"
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


def ensure_containers(client: Any, n: int, published: bool = False) -> list[Any]:
    """Exactly n running benchmark containers (created or removed as needed); published: each
    serves (busybox httpd) on a port published on a host port of Docker's choosing, as a
    host with one published port per container has (under a label of their own)."""
    label = PUBLISHED_LABEL if published else LABEL
    running = client.containers.list(filters={"label": label})
    for extra in running[n:]:
        extra.remove(force=True)
    for i in range(len(running), n):
        client.containers.run(
            IMAGE,
            ["httpd", "-f", "-p", "80"] if published else ["sleep", "360000"],
            detach=True,
            labels={label: "1"},
            name=f"dhe-bench-{i}-{os.getpid()}",
            ports={"80/tcp": None} if published else {},
        )
    time.sleep(1)  # let shims and veths settle
    return list(client.containers.list(filters={"label": label}))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
