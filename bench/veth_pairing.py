"""The veth pairing pass at N running containers, beside the seed's veth.sh and the bare
netlink calls, in the same run on the same host.

    sudo .venv/bin/python -m bench.veth_pairing --containers 20 100 250 --json bench/veth.json

Reports, per N: the network collector's full pass (netlink dump, /proc scan, RTM_GETNSID per
container, one RTM_GETLINK per veth peer), wall p50 and CPU mean; the bare netlink calls alone
(the same requests with the container PIDs known in advance, no /proc); pyroute2's IPRoute
path for the dump and the nsid lookups; the seed's veth.sh, run at the smallest N and
extrapolated beyond it from its measured cost per `docker exec`; and RSS across --rss-samples
passes. Needs net-tools and ethtool for veth.sh (apt-get install net-tools ethtool).
Traffic: none; netlink, /proc and the local Docker socket only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker
from pyroute2 import IPRoute

from bench.common import ensure_containers, percentile, rss_mb
from exporter.collectors.network.source import NetworkSource
from exporter.readers.netlink import RtnlSocket
from exporter.tick import Host

VETH_SH = Path(__file__).with_name("veth.sh")


@dataclass(frozen=True)
class Timing:
    wall_ms_p50: float
    cpu_ms_mean: float


@dataclass(frozen=True)
class Result:
    containers: int
    veths: int
    exporter_pass: Timing
    bare_netlink: Timing
    pyroute2_iproute: Timing
    veth_sh_seconds: float | None  # measured
    veth_sh_seconds_extrapolated: float | None
    rss_mb_start: float
    rss_mb_end: float
    rss_samples: int


def timed(fn: Callable[[], object], runs: int) -> Timing:
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.thread_time()
        fn()
        cpus.append((time.thread_time() - cpu) * 1000)
        walls.append((time.perf_counter() - wall) * 1000)
    return Timing(round(percentile(walls, 0.5), 2), round(statistics.fmean(cpus), 2))


def bare_netlink(sock: RtnlSocket, pids: list[int]) -> int:
    """The floor: the same netlink requests, with the container PIDs known in advance."""
    links = sock.dump_links()
    fds = [os.open(f"/proc/{pid}/ns/net", os.O_RDONLY) for pid in pids]
    try:
        sock.nsids_of(fds)
    finally:
        for fd in fds:
            os.close(fd)
    peers = [
        (link.peer_index, link.peer_nsid)
        for link in links
        if link.kind == "veth" and link.peer_nsid is not None and link.peer_index
    ]
    return sum(name is not None for name in sock.link_names(peers))


def pyroute2_path(ipr: Any, pids: list[int]) -> int:
    """pyroute2's documented API for the same dump and nsid lookups (no peer names: its
    IFLA_IF_NETNSID dump returned nothing here)."""
    links = list(ipr.get_links())
    for pid in pids:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            ipr.get_netnsid(fd=fd)
        finally:
            os.close(fd)
    return len(links)


def exec_cost_seconds(containers: list[Any], samples: int = 10) -> float:
    """What one `docker exec … ip link list` costs, the unit of veth.sh's work."""
    started = time.perf_counter()
    for c in containers[:samples]:
        subprocess.run(
            ["docker", "exec", c.id, "ip", "link", "list"],
            capture_output=True,
            check=True,
            timeout=60,
        )
    return (time.perf_counter() - started) / min(samples, len(containers))


def measure(
    client: Any, n: int, runs: int, rss_samples: int, *, run_veth_sh: bool, per_exec: float | None
) -> tuple[Result, float | None]:
    containers = ensure_containers(client, n)
    pids = [c.attrs["State"]["Pid"] for c in containers]
    reader, host = NetworkSource(timeout=10.0), Host.open()
    facts = reader.sample(host.tick())[0]
    veths = sum(1 for link in facts.links if link.kind == "veth")
    exporter_pass = timed(lambda: reader.read(host.tick()), runs)
    sock = RtnlSocket()
    bare = timed(lambda: bare_netlink(sock, pids), runs)
    with IPRoute() as ipr:
        p2 = timed(lambda: pyroute2_path(ipr, pids), max(3, runs // 10))

    veth_sh: float | None = None
    if run_veth_sh:
        started = time.perf_counter()
        subprocess.run(["bash", str(VETH_SH)], capture_output=True, check=True, timeout=3600)
        veth_sh = time.perf_counter() - started
    if per_exec is None and containers:
        per_exec = exec_cost_seconds(containers)
    # veth.sh execs into containers in `docker ps` order until it finds the peer: (N+1)/2
    # execs per veth on average.
    extrapolated = per_exec * veths * (n + 1) / 2 if per_exec is not None else None

    start_rss = rss_mb()
    for _ in range(rss_samples):
        reader.read(host.tick())
    reader.close()
    host.close()
    sock.close()
    return Result(
        containers=n,
        veths=veths,
        exporter_pass=exporter_pass,
        bare_netlink=bare,
        pyroute2_iproute=p2,
        veth_sh_seconds=round(veth_sh, 2) if veth_sh is not None else None,
        veth_sh_seconds_extrapolated=round(extrapolated, 1) if extrapolated is not None else None,
        rss_mb_start=round(start_rss, 1),
        rss_mb_end=round(rss_mb(), 1),
        rss_samples=rss_samples,
    ), per_exec


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--containers", type=int, nargs="+", default=[20, 100, 250])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rss-samples", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    args = parser.parse_args()
    if not (shutil.which("ifconfig") and shutil.which("ethtool")):
        raise SystemExit("veth.sh needs ifconfig and ethtool: apt-get install net-tools ethtool")
    client = docker.from_env()
    results: list[Result] = []
    per_exec: float | None = None
    try:
        for i, n in enumerate(sorted(args.containers)):
            result, per_exec = measure(
                client, n, args.runs, args.rss_samples, run_veth_sh=i == 0, per_exec=per_exec
            )
            results.append(result)
            print_row(result)
    finally:
        if not args.keep:
            ensure_containers(client, 0)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")


def print_row(r: Result) -> None:
    sh = f"{r.veth_sh_seconds:.1f}s" if r.veth_sh_seconds is not None else "-"
    print(
        f"N={r.containers:<4} veths={r.veths:<4}"
        f" exporter {r.exporter_pass.wall_ms_p50:6.1f}ms wall"
        f" {r.exporter_pass.cpu_ms_mean:6.1f}ms cpu"
        f" | bare netlink {r.bare_netlink.wall_ms_p50:6.1f}ms"
        f" | pyroute2 {r.pyroute2_iproute.wall_ms_p50:7.1f}ms"
        f" | veth.sh {sh} (extrapolated {r.veth_sh_seconds_extrapolated}s)"
        f" | rss {r.rss_mb_start}->{r.rss_mb_end}MB over {r.rss_samples}",
        flush=True,
    )


if __name__ == "__main__":
    main()
