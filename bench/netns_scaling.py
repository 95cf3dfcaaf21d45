"""The network and processes collectors against thousands of synthetic network namespaces, each
with a veth on a bridge of ours, fitted to a + b*links (section 3 of bench.host_bench)."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import veth_pairing
from bench.results import Fit, NetnsPoint
from exporter.collectors import by_name
from exporter.collectors.network.source import NetworkSource
from exporter.settings import Settings
from exporter.tick import Host

PREFIX = "dhebench"  # every namespace, link and bridge this script makes; cleanup keys on it
BRIDGE_PORTS = 1000  # a Linux bridge takes at most 1,024 ports (BR_MAX_PORTS)


def bridge(i: int) -> str:
    """The bridge namespace i's veth is a port of: one per 1,000 namespaces."""
    return f"{PREFIX}br{i // BRIDGE_PORTS}"


def ip_batch(lines: list[str], force: bool = False) -> None:
    if not lines:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".ip", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        done = subprocess.run(
            ["ip", *(["-force"] if force else []), "-batch", f.name],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode and not force:
            raise RuntimeError(f"ip -batch: {done.stderr.strip()[:500]}")
    finally:
        Path(f.name).unlink()


def our_netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(PREFIX)]


def our_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    names = [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()]
    return [name for name in names if name.startswith(PREFIX)]


def kill_sleepers(namespaces: list[str]) -> None:
    """Processes left in our namespaces (the --netns-sleepers of this or an interrupted run)."""
    for ns in namespaces:
        out = subprocess.run(
            ["ip", "netns", "pids", ns], check=False, capture_output=True, text=True
        )
        for pid in out.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def cleanup_netns() -> None:
    """Everything named dhebench*: namespaces (their veth ends go with them), links, bridge."""
    namespaces = our_netns()
    kill_sleepers(namespaces)
    ip_batch([f"netns del {ns}" for ns in namespaces], force=True)
    links = our_links()
    ip_batch([f"link del {name}" for name in links if not name.startswith(f"{PREFIX}br")], True)
    ip_batch([f"link del {name}" for name in our_links()], force=True)  # the bridges


def grow_netns(have: int, want: int, sleepers: list[subprocess.Popen[bytes]], procs: bool) -> None:
    lines: list[str] = []
    for i in range(have, want):
        ns = f"{PREFIX}{i}"
        if i % BRIDGE_PORTS == 0:
            lines += [f"link add {bridge(i)} type bridge", f"link set {bridge(i)} up"]
        lines += [
            f"netns add {ns}",
            f"link add {ns}h type veth peer name eth0 netns {ns}",
            f"link set {ns}h master {bridge(i)}",
            f"link set {ns}h up",
        ]
    ip_batch(lines)
    if procs:
        for i in range(have, want):
            sleepers.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", f"{PREFIX}{i}", "sleep", "infinity"],
                    stdin=subprocess.DEVNULL,
                )
            )


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """(wall p50, CPU mean) in ms, as bench.veth_pairing times a pass."""
    timing = veth_pairing.timed(fn, runs)
    return timing.wall_ms_p50, timing.cpu_ms_mean


def netns_section(sizes: list[int], runs: int, procs: bool) -> list[NetnsPoint]:
    points: list[NetnsPoint] = []
    sleepers: list[subprocess.Popen[bytes]] = []
    # confirm_after=0: when a veth looks orphaned, the source reads a second time to confirm;
    # without the pause that is one more pass of CPU.
    network = NetworkSource(timeout=10.0, confirm_after=0.0)
    processes = by_name()["processes"].source(Settings(collectors=("processes",)))
    host = Host.open()  # each read a tick of its own, as the sampler's runs are
    try:
        cleanup_netns()
        have = 0
        for size in sorted(sizes):
            try:
                grow_netns(have, size, sleepers, procs)
            except RuntimeError as exc:
                print(f"  netns={size}: {exc}; stopping here", flush=True)
                break
            have = size
            time.sleep(0.5)
            facts = network.sample(host.tick())[0]
            net_wall, net_cpu = timed(lambda: network.read(host.tick()), runs)
            proc_wall, proc_cpu = timed(lambda: processes.read(host.tick()), runs)
            point = NetnsPoint(
                netns=size,
                links=len(facts.links),
                veths=sum(1 for link in facts.links if link.kind == "veth"),
                network_wall_ms_p50=net_wall,
                network_cpu_ms_mean=net_cpu,
                processes_wall_ms_p50=proc_wall,
                processes_cpu_ms_mean=proc_cpu,
            )
            points.append(point)
            print(
                f"  netns={size:<5} links={point.links:<5} network {net_wall:7.2f}ms wall"
                f" {net_cpu:7.2f}ms cpu | processes {proc_wall:7.2f}ms wall"
                f" {proc_cpu:7.2f}ms cpu",
                flush=True,
            )
    finally:
        network.close()
        processes.close()
        for p in sleepers:
            p.kill()
        for p in sleepers:
            p.wait()
        cleanup_netns()
    return points


def fit(what: str, xs: list[float], ys: list[float]) -> Fit:
    """Least squares y = a + b*x."""
    n = len(xs)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    a = my - b * mx
    residuals = [y - (a + b * x) for x, y in zip(xs, ys, strict=True)]
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1 - sum(r * r for r in residuals) / ss_tot if ss_tot else 1.0
    rel = max(
        (abs(r) / abs(a + b * x) for r, x in zip(residuals, xs, strict=True) if a + b * x),
        default=0.0,
    )
    return Fit(
        what,
        round(a, 3),
        round(b * 1000, 3),
        round(r2, 4),
        round(rel, 3),
        [round(r, 3) for r in residuals] if n else [],
    )
