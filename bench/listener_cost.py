"""What the ports source's listener readings cost: one reading of a container's /proc/PID/net
(whole, as the source reads it; in small pieces that stop at the port; the held-socket check),
and the source's CPU per run over many runs, on containers of its own (dhe-li-bench-N: busybox
httpd publishing port 80), removed afterwards. The shared readings of a tick (the /proc scan,
the container list, the firewall, dockerd) are taken before the source's run is timed: other
collectors take them anyway.

    python -m bench.listener_cost --containers 20 --interval 15 --runs 64

Run it with PYTHONPATH pointing at another checkout (--source-only) to time that checkout's
source the same way."""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import docker

from exporter.collectors.ports.source import build
from exporter.settings import Settings
from exporter.tick import Host

IMAGE = "dhe-test/busybox:latest"
PREFIX = "dhe-li-bench"


def start(client: Any, n: int) -> list[Any]:
    made = [
        client.containers.run(
            IMAGE,
            ["sh", "-c", "exec httpd -f -p 80"],
            name=f"{PREFIX}-{uuid.uuid4().hex[:8]}",
            detach=True,
            ports={"80/tcp": None},
            labels={PREFIX: "1"},
        )
        for _ in range(n)
    ]
    for c in made:
        c.reload()
    return made


def pid_of(container: Any) -> int:
    container.reload()
    return int(container.attrs["State"]["Pid"])


def per_call(call: Callable[[], object], repeat: int) -> float:
    """CPU ms of one call (this thread's), the mean of `repeat`."""
    began = time.thread_time()
    for _ in range(repeat):
        call()
    return (time.thread_time() - began) / repeat * 1000


def pieces(path: str, port: int) -> bool:
    """The file read 64 bytes at a time, stopping at the first listener on the port."""
    fd = os.open(path, os.O_RDONLY)
    try:
        buffer = b""
        header = True
        while chunk := os.read(fd, 64):
            buffer += chunk
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                if header:
                    header = False
                    continue
                fields = line.split()
                if fields[3] == b"0A" and int(fields[1].rpartition(b":")[2], 16) == port:
                    return True
        return False
    finally:
        os.close(fd)


def readings(pids: list[int], repeat: int) -> None:
    from exporter.readers.proc_net import bound_socket_inodes, held_sockets  # noqa: PLC0415

    rows: dict[str, Callable[[int], object]] = {
        "whole tcp6 (the source, listener found there last time)": lambda pid: bound_socket_inodes(
            "/proc", pid, "tcp", [80], ipv6_first=True
        ),
        "whole tcp then tcp6 (a first reading: httpd listens on ::)": lambda pid: (
            bound_socket_inodes("/proc", pid, "tcp", [80])
        ),
        "tcp6 in 64-byte pieces, stopping at the port": lambda pid: pieces(
            f"/proc/{pid}/net/tcp6", 80
        ),
    }
    inodes = {
        pid: {i for s, i in bound_socket_inodes("/proc", pid, "tcp", [80], True) if s.port == 80}
        for pid in pids
    }

    def held(pid: int) -> object:
        return held_sockets("/proc", [pid], inodes[pid])

    rows["held-socket check (/proc/PID/fd links)"] = held
    for name, call in rows.items():
        costs = [per_call(functools.partial(call, pid), repeat) for pid in pids]
        print(f"| {name} | {statistics.mean(costs):.3f} | {max(costs):.3f} |", flush=True)


def source_runs(interval: float, runs: int) -> None:
    settings = Settings(
        collectors=("nat", "firewall", "ports"),
        sample_interval=interval,
        sample_timeout=min(10.0, 0.8 * interval),
    )
    source = build(settings)
    host = Host.open()
    costs = []
    try:
        for _ in range(runs):
            tick = host.tick()
            tick.proc_scan()
            tick.engine()
            tick.netfilter()
            tick.dockerd()
            began = time.thread_time()
            source.read(tick)
            costs.append((time.thread_time() - began) * 1000)
    finally:
        source.close()
        host.close()
    later = costs[1:]
    print(
        f"| {interval:g} s | {costs[0]:.1f} | {statistics.mean(later):.2f} | "
        f"{statistics.median(later):.2f} | {max(later):.2f} | {len(later)} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--interval", type=float, action="append")
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--source-only", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    args = parser.parse_args()
    client = docker.from_env()
    made = client.containers.list(filters={"label": PREFIX})  # kept by an earlier --keep
    made += start(client, max(0, args.containers - len(made)))
    try:
        time.sleep(2)  # httpd binds
        publishing = [c for c in client.api.containers() if c.get("Ports")]
        print(f"{len(made)} containers of ours; {len(publishing)} publishing on the host")
        if not args.source_only:
            print("| one reading | CPU ms (mean over containers) | max |\n|---|---|---|")
            readings([pid_of(c) for c in made], args.repeat)
        print("| interval | first run ms | later runs mean | median | max | runs |")
        print("|---|---|---|---|---|---|")
        for interval in args.interval or [15.0, 2.0]:
            source_runs(interval, args.runs)
    finally:
        if not args.keep:
            for c in made:
                c.remove(force=True)
        client.close()


if __name__ == "__main__":
    main()
