"""The conntrack collector against large tables: CPU per run (user and system: the kernel builds
every entry's message in our recvmsg calls) and the exporter's extra peak RSS, with N synthetic
entries, next to `conntrack -L | wc -l` on the same table.

    sudo .venv/bin/python -m bench.conntrack_scaling --entries 10000 100000 250000

The entries are made with `conntrack -R` (a batch of `-I` lines: no packet is sent) in a network
namespace this script creates, so the host's table and its limit are untouched (the limit is
per namespace); the collector's source runs inside that namespace, against 250 synthetic
containers whose addresses 80% of the entries carry. The namespace, and with it every entry,
is flushed and deleted afterwards, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from bench.common import rss_mb
from exporter.collectors.conntrack.source import ConntrackSource
from exporter.readers.docker_api import ContainerRecord, EngineFacts
from exporter.tick import Tick

PREFIX = "dhebench-ct"
CONTAINERS = 250
RUNS = 5


def container_address(i: int) -> str:
    a = 10 + i
    return f"10.201.{a // 256}.{a % 256}"


def entry_lines(n: int) -> list[str]:
    """80% from a container, 20% from an address nobody has; 85% TCP established, 5% TCP
    time_wait, 10% UDP; destinations in the benchmarking range 198.18.0.0/15."""
    lines = []
    for i in range(n):
        src = container_address(i % CONTAINERS) if i % 5 else f"10.202.{(i >> 8) & 255}.{i & 255}"
        dst = f"198.18.{(i >> 8) & 255}.{i & 255}"
        port = 1024 + (i >> 16)
        if i % 20 < 17:
            kind = f"-p tcp --sport {port} --dport 443 --state ESTABLISHED -u ASSURED"
        elif i % 20 == 17:
            kind = f"-p tcp --sport {port} --dport 80 --state TIME_WAIT"
        else:
            kind = f"-p udp --sport {port} --dport 53"
        lines.append(f"-I -s {src} -d {dst} {kind} -t 1800")
    return lines


class _Tick:
    """What the source asks of a tick: the container list."""

    def __init__(self, engine: EngineFacts) -> None:
        self._engine = engine

    def engine(self, _wait: float | None = None) -> EngineFacts:
        return self._engine


def child(max_entries: int) -> dict[str, Any]:
    """Inside the namespace: the collector's source, RUNS times after one warm-up."""
    records = tuple(
        ContainerRecord(
            id=f"{i:064x}",
            name=f"bench-{i}",
            image="x",
            image_id="x",
            state="running",
            network_mode="bench",
            created=0.0,
            addresses=(container_address(i),),
        )
        for i in range(CONTAINERS)
    )
    tick = cast(Tick, _Tick(EngineFacts(records, (), "1.41")))
    source = ConntrackSource("/proc", timeout=30.0, max_entries=max_entries)
    baseline = rss_mb()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on
    facts = source.read(tick)
    user, system, wall = [], [], []
    for _ in range(RUNS):
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        facts = source.read(tick)
        after = resource.getrusage(resource.RUSAGE_SELF)
        wall.append((time.monotonic() - started) * 1000)
        user.append((after.ru_utime - before.ru_utime) * 1000)
        system.append((after.ru_stime - before.ru_stime) * 1000)
    peak = next(
        int(line.split()[1]) / 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    source.close()
    assert facts.dump is not None, facts.dump_error
    return {
        "read": facts.dump.read,
        "user_ms": statistics.mean(user),
        "system_ms": statistics.mean(system),
        "cpu_ms": statistics.mean(u + s for u, s in zip(user, system, strict=True)),
        "wall_ms": statistics.median(wall),
        "rss_baseline_mb": baseline,
        "rss_extra_mb": peak - baseline,
    }


def conntrack_list(netns: str) -> dict[str, float]:
    """`conntrack -L | wc -l` on the same table: its CPU (its children's rusage) and lines."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    listed = subprocess.run(
        ["ip", "netns", "exec", netns, "conntrack", "-L"],
        capture_output=True,
        check=True,
        timeout=600,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "lines": listed.stdout.count(b"\n"),
        "cpu_ms": ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000,
        "wall_ms": (time.monotonic() - started) * 1000,
    }


def measure(n: int) -> dict[str, Any]:
    netns = f"{PREFIX}-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=30)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".ct") as batch:
            batch.write("\n".join(entry_lines(n)) + "\n")
            batch.flush()
            subprocess.run(
                ["ip", "netns", "exec", netns, "conntrack", "-R", batch.name],
                check=True,
                capture_output=True,
                timeout=1200,
            )
        ours = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "bench.conntrack_scaling",
             "--child", "--max-entries", str(10 * n)],
            check=True,
            capture_output=True,
            text=True,
            timeout=1200,
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        result: dict[str, Any] = {"entries": n, **json.loads(ours.stdout)}
        result["conntrack_L"] = conntrack_list(netns)
        return result
    finally:
        subprocess.run(
            ["ip", "netns", "exec", netns, "conntrack", "-F"], capture_output=True, check=False
        )
        subprocess.run(["ip", "netns", "del", netns], check=False, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[10000, 100000, 250000])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--max-entries", type=int, default=10**7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.max_entries)))
        return 0
    results = [measure(n) for n in args.entries]
    print(
        f"{'entries':>8} {'read':>8} {'cpu ms':>8} {'user':>6} {'sys':>6} {'wall':>6} "
        f"{'+RSS MB':>8} | {'conntrack -L cpu':>16} {'wall':>6} {'lines':>7}"
    )
    for r in results:
        c = r["conntrack_L"]
        print(
            f"{r['entries']:>8} {r['read']:>8} {r['cpu_ms']:>8.0f} {r['user_ms']:>6.0f} "
            f"{r['system_ms']:>6.0f} {r['wall_ms']:>6.0f} {r['rss_extra_mb']:>8.1f} | "
            f"{c['cpu_ms']:>16.0f} {c['wall_ms']:>6.0f} {c['lines']:>7}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
