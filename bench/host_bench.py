"""The whole exporter on this host, in one run: every collector's sample cost, the real exporter
process under scrape load, the network and processes collectors against thousands of synthetic
network namespaces, and the peers (the seed's veth.sh, `docker system df -v`, node_exporter).

    sudo .venv/bin/python -m bench.host_bench                 # the full run (~30 min)
    sudo .venv/bin/python -m bench.host_bench --quick         # N=0 5, netns 0 50 100 (~2.5 min)

Sections, per N in --containers (real containers from the test bed's image, label dhe-bench):
  1. per collector: wall p50/p95, CPU, dockerd and containerd extra CPU per sample
     (bench.sample_cost.measure), with "all collectors but layers" as its own total;
  2. the exporter process (`docker-host-exporter --sample.interval 1s` on a loopback port):
     scrape p50/p99 under 10 concurrent keep-alive scrapers, with and without gzip; exposition
     size and series; its CPU and dockerd's per sample; its RSS after warm-up and after
     --rss-samples samples of a second process at --sample.interval 200ms;
  3. once, at the last N: --netns synthetic network namespaces, each with a veth whose host end
     is a port of one bridge; network and processes collectors' cost against the host's link
     count, fitted to a + b*links;
  4. peers: veth.sh at the smallest N > 0 (bench.veth_pairing.measure), extrapolated to the
     other N; `docker system df -v` against the layers collector; node_exporter (Debian's
     prometheus-node-exporter, run here on a loopback port) under the same scrape load.

Containers are left as the last N leaves them (--teardown removes them). Traffic: loopback HTTP
to the processes this script starts, the local Docker socket, netlink and /proc only.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker

from bench import sample_cost, veth_pairing
from bench.common import cpu_ms_of, ensure_containers, percentile, pid_of, rss_mb
from exporter.collectors import by_name
from exporter.readers.network import NetworkReader
from exporter.settings import Settings

EXPORTER = Path(sys.executable).with_name("docker-host-exporter")
NODE_EXPORTER = "prometheus-node-exporter"
PREFIX = "dhebench"  # every namespace, link and bridge this script makes; cleanup keys on it
BRIDGE_PORTS = 1000  # a Linux bridge takes at most 1,024 ports (BR_MAX_PORTS)


def bridge(i: int) -> str:
    """The bridge namespace i's veth is a port of: one per 1,000 namespaces."""
    return f"{PREFIX}br{i // BRIDGE_PORTS}"


SCRAPERS = 10
LAST_SUCCESS = "docker_host_collector_last_success_timestamp_seconds"
DURATION = "docker_host_collector_duration_seconds"


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrapeLoad:
    gzip: bool
    keepalive: bool
    scrapes: int
    errors: int
    p50_ms: float
    p99_ms: float
    seconds: float
    server_cpu_ms_per_scrape: float  # the server process's CPU during the load, per scrape


@dataclass(frozen=True)
class ExporterRun:
    containers: int
    interval_s: float
    exposition_bytes: int
    exposition_gzip_bytes: int
    series: int
    cpu_ms_per_sample: float
    samples_in_window: int
    dockerd_cpu_ms_per_sample: float  # raw: dockerd's CPU over the window / samples
    dockerd_cpu_ms_per_sample_net: float  # less dockerd's background rate measured beforehand
    layers_ran_in_window: bool
    scrape_gzip: ScrapeLoad
    scrape_plain: ScrapeLoad
    # gzip again, a new connection per scrape: keep-alive scrapes of a server that sends
    # headers and body in two writes without TCP_NODELAY wait out the peer's delayed ACK.
    scrape_gzip_new_connections: ScrapeLoad
    scrape_cpu_ms_net: float  # CPU per scrape less the sampling CPU over the same time (gzip)
    rss_mb_after_warmup: float
    rss_interval_s: float
    rss_samples: int
    rss_mb_warm: float
    rss_mb_end: float
    rss_growth_mb: float
    rss_max_collector_seconds: float  # longest collector run seen while counting samples


@dataclass(frozen=True)
class DockerDf:
    containers: int
    runs: int
    wall_ms_p50: float
    dockerd_cpu_ms_mean: float
    layers_wall_ms_p50: float
    layers_cpu_ms_mean: float
    layers_dockerd_cpu_ms_mean: float


@dataclass(frozen=True)
class NodeExporterRun:
    containers: int
    version: str
    exposition_bytes: int
    series: int
    scrape_gzip: ScrapeLoad
    scrape_plain: ScrapeLoad
    rss_mb: float


@dataclass(frozen=True)
class NetnsPoint:
    netns: int
    links: int
    veths: int
    network_wall_ms_p50: float
    network_cpu_ms_mean: float
    processes_wall_ms_p50: float
    processes_cpu_ms_mean: float


@dataclass(frozen=True)
class Fit:
    what: str
    a_ms: float
    b_us_per_link: float
    r2: float
    max_relative_deviation: float
    residuals_ms: list[float]


@dataclass(frozen=True)
class VethSh:
    containers_measured: int
    veths: int
    seconds_measured: float | None
    seconds_per_exec: float | None
    # N -> seconds extrapolated: (N+1)/2 execs per veth, at the measured cost per exec
    extrapolated: dict[int, float] = field(default_factory=dict)


@dataclass
class Report:
    args: dict[str, Any]
    started: str
    seconds: float = 0.0
    dockerd_background_ms_per_s: float = 0.0
    sample_cost: list[sample_cost.Result] = field(default_factory=list)
    exporter: list[ExporterRun] = field(default_factory=list)
    netns_containers: int = 0
    netns: list[NetnsPoint] = field(default_factory=list)
    netns_fits: list[Fit] = field(default_factory=list)
    veth_sh: VethSh | None = None
    network_pass_wall_ms_p50: dict[int, float] = field(default_factory=dict)
    docker_df: list[DockerDf] = field(default_factory=list)
    node_exporter: list[NodeExporterRun] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)


# -- processes and scraping ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int, path: str = "/metrics", gzipped: bool = False) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzipped else {})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path} on :{port}: {resp.status}")
        return body
    finally:
        conn.close()


def series_of(text: bytes) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))


def samples_of(text: bytes, family: str) -> dict[str, float]:
    """{collector: value} of one of the exporter's per-collector families."""
    found: dict[str, float] = {}
    head = family.encode() + b'{collector="'
    for line in text.splitlines():
        if line.startswith(head):
            label, _, value = line[len(head) :].partition(b'"} ')
            found[label.decode()] = float(value)
    return found


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the child's stderr; closed with the process
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    wait_listening(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_exporter(interval: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = start(
        [
            str(EXPORTER),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--sample.interval",
            f"{interval * 1000:g}ms",
            "--log.level",
            "error",
        ],
        port,
    )
    return proc, port


def wait_all_succeeded(port: int, collectors: Sequence[str], timeout: float = 120) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = get(port)
        if set(collectors) <= samples_of(text, LAST_SUCCESS).keys():
            return text
        time.sleep(0.2)
    raise SystemExit(f"the exporter on :{port} has not sampled every collector in {timeout}s")


def scrape_load(
    port: int, pid: int, scrapes: int, gzipped: bool, keepalive: bool = True
) -> ScrapeLoad:
    """SCRAPERS threads, each with one keep-alive HTTP/1.1 connection (as Prometheus keeps its
    connection to a target), reconnecting only after an error, or with keepalive=False a new
    connection per scrape; latency is connect (if any) and request sent to body read."""
    per_thread = max(1, scrapes // SCRAPERS)
    latencies: list[list[float]] = [[] for _ in range(SCRAPERS)]
    errors = [0] * SCRAPERS
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    barrier = threading.Barrier(SCRAPERS + 1)

    def scraper(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        barrier.wait()
        for _ in range(per_thread):
            t0 = time.perf_counter()
            if not keepalive:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("GET", "/metrics", headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise http.client.HTTPException(str(resp.status))
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies[i].append((time.perf_counter() - t0) * 1000)
        conn.close()

    threads = [threading.Thread(target=scraper, args=(i,)) for i in range(SCRAPERS)]
    for t in threads:
        t.start()
    cpu0 = cpu_ms_of(pid)
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    cpu = cpu_ms_of(pid) - cpu0
    flat = [x for lat in latencies for x in lat]
    return ScrapeLoad(
        gzip=gzipped,
        keepalive=keepalive,
        scrapes=len(flat),
        errors=sum(errors),
        p50_ms=round(percentile(flat, 0.5), 2) if flat else 0.0,
        p99_ms=round(percentile(flat, 0.99), 2) if flat else 0.0,
        seconds=round(seconds, 2),
        server_cpu_ms_per_scrape=round(cpu / max(1, len(flat)), 3),
    )


def background_rate(pid: int, seconds: float) -> float:
    """A process's CPU in ms per second while this script leaves it alone."""
    c0, t0 = cpu_ms_of(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_ms_of(pid) - c0) / (time.monotonic() - t0)


# -- section 1 and 2: the exporter at N containers -------------------------------------------


FAST = [name for name in by_name() if name not in sample_cost.SLOW_COLLECTORS]


def exporter_run(n: int, args: argparse.Namespace, dockerd_bg: float) -> ExporterRun:
    dockerd = pid_of("dockerd")
    proc, port = start_exporter(args.interval)
    try:
        wait_all_succeeded(port, list(by_name()))
        time.sleep(args.warmup)
        rss_warm = rss_mb(proc.pid)

        # Sampling alone: the exporter's and dockerd's CPU per sample, nobody scraping.
        before = get(port)
        cpu0, d0 = cpu_ms_of(proc.pid), cpu_ms_of(dockerd)
        t0 = time.monotonic()
        time.sleep(args.idle)
        after = get(port)
        cpu1, d1 = cpu_ms_of(proc.pid), cpu_ms_of(dockerd)
        window = time.monotonic() - t0
        ts0, ts1 = samples_of(before, LAST_SUCCESS), samples_of(after, LAST_SUCCESS)
        samples = max(1, round((ts1["network"] - ts0["network"]) / args.interval))
        sampling_rate = (cpu1 - cpu0) / window  # ms per s

        gz = scrape_load(port, proc.pid, args.scrapes, gzipped=True)
        plain = scrape_load(port, proc.pid, args.scrapes, gzipped=False)
        fresh = scrape_load(port, proc.pid, args.scrapes // 4, gzipped=True, keepalive=False)
        text, zipped = get(port), get(port, gzipped=True)
        gzip.decompress(zipped)  # a valid gzip stream, or this raises
        rss_end = rss_mb(proc.pid)
        scrape_net = gz.server_cpu_ms_per_scrape - sampling_rate * gz.seconds / max(1, gz.scrapes)
    finally:
        stop(proc)

    if args.rss_at == "all" or n == max(args.containers):
        rss = rss_run(args.rss_interval, args.rss_samples, args.warmup)
    else:
        rss = (0, round(rss_warm, 1), round(rss_end, 1), 0.0)  # the 1 s run's, no count
    return ExporterRun(
        containers=n,
        interval_s=args.interval,
        exposition_bytes=len(text),
        exposition_gzip_bytes=len(zipped),
        series=series_of(text),
        cpu_ms_per_sample=round((cpu1 - cpu0) / samples, 2),
        samples_in_window=samples,
        dockerd_cpu_ms_per_sample=round((d1 - d0) / samples, 2),
        dockerd_cpu_ms_per_sample_net=round((d1 - d0 - dockerd_bg * window) / samples, 2),
        layers_ran_in_window=ts0.get("layers") != ts1.get("layers"),
        scrape_gzip=gz,
        scrape_plain=plain,
        scrape_gzip_new_connections=fresh,
        scrape_cpu_ms_net=round(scrape_net, 3),
        rss_mb_after_warmup=round(rss_warm, 1),
        rss_interval_s=args.rss_interval,
        rss_samples=rss[0],
        rss_mb_warm=rss[1],
        rss_mb_end=rss[2],
        rss_growth_mb=round(rss[2] - rss[1], 1),
        rss_max_collector_seconds=rss[3],
    )


def rss_run(interval: float, samples: int, warmup: float) -> tuple[int, float, float, float]:
    """RSS of an exporter sampling every `interval` after warm-up and after `samples` more
    samples of the fast collectors, counted by the network collector's last success time."""
    proc, port = start_exporter(interval)
    try:
        wait_all_succeeded(port, list(by_name()))
        time.sleep(warmup)
        first = samples_of(get(port), LAST_SUCCESS)["network"]
        warm = rss_mb(proc.pid)
        longest = 0.0
        while True:
            time.sleep(min(2.0, max(0.2, samples * interval / 20)))
            text = get(port)
            durations = samples_of(text, DURATION)
            longest = max([longest, *(durations.get(c, 0.0) for c in FAST)])
            done = round((samples_of(text, LAST_SUCCESS)["network"] - first) / interval)
            if done >= samples:
                break
        return done, round(warm, 1), round(rss_mb(proc.pid), 1), round(longest, 3)
    finally:
        stop(proc)


# -- section 3: synthetic network namespaces -------------------------------------------------


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
    # confirm_after=0: veths whose peer namespace holds no container look orphaned, and the
    # reader reads a second time to confirm; without the pause that is one more pass of CPU.
    network = NetworkReader(confirm_after=0.0)
    processes = by_name()["processes"].build(Settings(collectors=("processes",)))
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
            facts = network.read()
            net_wall, net_cpu = timed(network.read, runs)
            time.sleep(0.6)  # past SHARED_SCAN_MAX_AGE: no reuse of the network's /proc scan
            proc_wall, proc_cpu = timed(processes.read, runs)
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


# -- section 4: peers ------------------------------------------------------------------------


def docker_df(n: int, runs: int, layers: sample_cost.CollectorCost) -> DockerDf:
    dockerd = pid_of("dockerd")
    walls, cpus = [], []
    for _ in range(runs):
        d0, t0 = cpu_ms_of(dockerd), time.perf_counter()
        subprocess.run(
            ["docker", "system", "df", "-v"], capture_output=True, check=True, timeout=600
        )
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append(cpu_ms_of(dockerd) - d0)
    return DockerDf(
        containers=n,
        runs=runs,
        wall_ms_p50=round(percentile(walls, 0.5), 1),
        dockerd_cpu_ms_mean=round(statistics.fmean(cpus), 1),
        layers_wall_ms_p50=layers.wall_ms_p50,
        layers_cpu_ms_mean=layers.cpu_ms_mean,
        layers_dockerd_cpu_ms_mean=layers.dockerd_cpu_ms_mean,
    )


def ensure_node_exporter() -> str:
    if shutil.which(NODE_EXPORTER) is None:
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus-node-exporter"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        # The package starts its service under systemd; this benchmark runs its own copy.
        if shutil.which("systemctl"):
            subprocess.run(["systemctl", "disable", "--now", NODE_EXPORTER], check=False)
    out = subprocess.run([NODE_EXPORTER, "--version"], check=False, capture_output=True, text=True)
    return (out.stdout + out.stderr).split("\n", 1)[0].strip()


def node_exporter_run(n: int, scrapes: int, version: str) -> NodeExporterRun:
    port = free_port()
    proc = start([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"], port)
    try:
        for _ in range(3):  # warm-up
            get(port)
        gz = scrape_load(port, proc.pid, scrapes, gzipped=True)
        plain = scrape_load(port, proc.pid, scrapes, gzipped=False)
        text = get(port)
        rss = rss_mb(proc.pid)
    finally:
        stop(proc)
    return NodeExporterRun(
        containers=n,
        version=version,
        exposition_bytes=len(text),
        series=series_of(text),
        scrape_gzip=gz,
        scrape_plain=plain,
        rss_mb=round(rss, 1),
    )


def network_pass(runs: int) -> tuple[float, int]:
    reader = NetworkReader()
    try:
        facts = reader.read()
        wall, _ = timed(reader.read, runs)
    finally:
        reader.close()
    return wall, sum(1 for link in facts.links if link.kind == "veth")


# -- tables ----------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:.2f}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n== {title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def print_report(r: Report) -> None:
    rows: list[list[str]] = []
    for s in r.sample_cost:
        for c in s.collectors:
            rows.append(
                [
                    str(s.containers),
                    c.collector,
                    ms(c.wall_ms_p50),
                    ms(c.wall_ms_p95),
                    ms(c.cpu_ms_mean),
                    ms(c.dockerd_cpu_ms_mean),
                    ms(c.containerd_cpu_ms_mean),
                    str(c.runs),
                ]
            )
        rows.append(
            [
                str(s.containers),
                "ALL BUT LAYERS",
                "",
                "",
                ms(s.cpu_ms_per_sample_without_layers),
                ms(s.dockerd_cpu_ms_per_sample_without_layers),
                ms(s.containerd_cpu_ms_per_sample - _layers(s).containerd_cpu_ms_mean),
                f"shims {s.shims_cpu_ms_per_sample:.2f}/sample",
            ]
        )
    table(
        "1. per collector, per sample (ms; targets at 250: all-but-layers CPU <= 60,"
        f" dockerd <= 10; dockerd background {r.dockerd_background_ms_per_s:.2f} ms/s)",
        ["N", "collector", "wall p50", "wall p95", "CPU", "dockerd CPU", "containerd", "runs"],
        rows,
    )
    table(
        "2. the exporter process (10 scrapers, keep-alive unless noted; ms, MB)",
        [
            "N",
            "gzip p50",
            "gzip p99",
            "plain p50",
            "plain p99",
            "gzip new-conn p50/p99",
            "bytes",
            "gzip bytes",
            "series",
            "CPU/sample",
            "dockerd/sample (net)",
            "CPU/scrape",
            "RSS warm",
            "RSS after samples",
        ],
        [
            [
                str(e.containers),
                ms(e.scrape_gzip.p50_ms),
                ms(e.scrape_gzip.p99_ms),
                ms(e.scrape_plain.p50_ms),
                ms(e.scrape_plain.p99_ms),
                f"{ms(e.scrape_gzip_new_connections.p50_ms)}"
                f"/{ms(e.scrape_gzip_new_connections.p99_ms)}",
                str(e.exposition_bytes),
                str(e.exposition_gzip_bytes),
                str(e.series),
                ms(e.cpu_ms_per_sample),
                f"{e.dockerd_cpu_ms_per_sample:.2f} ({e.dockerd_cpu_ms_per_sample_net:.2f})",
                f"{e.scrape_gzip.server_cpu_ms_per_scrape:.3f}",
                f"{e.rss_mb_after_warmup:.1f}",
                f"{e.rss_mb_warm:.1f} -> {e.rss_mb_end:.1f} ("
                + (
                    f"{e.rss_samples} @ {e.rss_interval_s:g}s"
                    if e.rss_samples
                    else f"end of the {e.interval_s:g}s run"
                )
                + f", {e.rss_growth_mb:+.1f})",
            ]
            for e in r.exporter
        ],
    )
    if r.netns:
        table(
            f"3. synthetic network namespaces ({r.netns_containers} containers running; ms)",
            ["netns", "links", "veths", "network wall", "network CPU", "proc wall", "proc CPU"],
            [
                [
                    str(p.netns),
                    str(p.links),
                    str(p.veths),
                    ms(p.network_wall_ms_p50),
                    ms(p.network_cpu_ms_mean),
                    ms(p.processes_wall_ms_p50),
                    ms(p.processes_cpu_ms_mean),
                ]
                for p in r.netns
            ],
        )
        for f in r.netns_fits:
            print(
                f"  fit {f.what}: {f.a_ms:.2f} ms + {f.b_us_per_link:.2f} us/link,"
                f" R2={f.r2:.4f}, max |residual|/fit={f.max_relative_deviation:.1%},"
                f" residuals ms {f.residuals_ms}"
            )
    rows = []
    if r.veth_sh is not None:
        v = r.veth_sh
        for n, seconds in sorted(v.extrapolated.items()):
            measured = v.seconds_measured if n == v.containers_measured else None
            net = r.network_pass_wall_ms_p50.get(n)
            rows.append(
                [
                    str(n),
                    f"{measured:.1f}" if measured is not None else "-",
                    f"{seconds:.1f}",
                    ms(net) if net is not None else "-",
                    f"{(measured or seconds) * 1000 / net:,.0f}x" if net else "-",
                ]
            )
        table(
            f"4a. seed's veth.sh (measured at N={v.containers_measured},"
            f" {v.seconds_per_exec or 0:.3f} s per docker exec)",
            ["N", "veth.sh s", "extrapolated s", "exporter network pass ms", "ratio"],
            rows,
        )
    table(
        "4b. docker system df -v against the layers collector (ms)",
        ["N", "df -v wall", "df -v dockerd", "layers wall", "layers CPU", "layers dockerd", "x"],
        [
            [
                str(d.containers),
                f"{d.wall_ms_p50:.1f}",
                f"{d.dockerd_cpu_ms_mean:.1f}",
                ms(d.layers_wall_ms_p50),
                ms(d.layers_cpu_ms_mean),
                ms(d.layers_dockerd_cpu_ms_mean),
                f"{d.wall_ms_p50 / d.layers_wall_ms_p50:.1f}x" if d.layers_wall_ms_p50 else "-",
            ]
            for d in r.docker_df
        ],
    )
    if r.node_exporter:
        table(
            f"4c. node_exporter ({r.node_exporter[0].version}), same 10-scraper load (ms, MB)",
            [
                "N",
                "gzip p50",
                "gzip p99",
                "plain p50",
                "plain p99",
                "bytes",
                "series",
                "CPU/scrape",
                "RSS",
                "exporter p99 / node p99 (gzip)",
            ],
            [
                [
                    str(ne.containers),
                    ms(ne.scrape_gzip.p50_ms),
                    ms(ne.scrape_gzip.p99_ms),
                    ms(ne.scrape_plain.p50_ms),
                    ms(ne.scrape_plain.p99_ms),
                    str(ne.exposition_bytes),
                    str(ne.series),
                    f"{ne.scrape_gzip.server_cpu_ms_per_scrape:.2f}",
                    f"{ne.rss_mb:.1f}",
                    f"{r.ratios.get(f'exporter_p99_over_node_p99_gzip@{ne.containers}', 0):.2f}",
                ]
                for ne in r.node_exporter
            ],
        )
    print("\nratios:")
    for key, value in r.ratios.items():
        print(f"  {key} = {value:,.3g}")


def _layers(s: sample_cost.Result) -> sample_cost.CollectorCost:
    return next(c for c in s.collectors if c.collector == "layers")


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--containers", type=int, nargs="*", default=None, help="default: 0 50 100 250")
    add("--netns", type=int, nargs="*", default=None, help="default: 0 250 500 1000 2000")
    add("--quick", action="store_true", help="N=0 5, netns 0 50 100, fewer scrapes and samples")
    add("--samples", type=int, default=None, help="samples per N in section 1 (default 100)")
    add("--scrapes", type=int, default=None, help="scrapes per load (default 2000)")
    add("--interval", type=float, default=1.0, help="exporter --sample.interval, s (default 1)")
    add("--idle", type=float, default=None, help="seconds of sampling alone (default 20)")
    add("--rss-samples", type=int, default=None, help="default 1000")
    add("--rss-interval", type=float, default=0.2, help="s (default 0.2)")
    add(
        "--rss-at",
        choices=("all", "largest"),
        default="all",
        help="count --rss-samples at every N (default) or only at the largest, which saves"
        " --rss-samples x --rss-interval seconds per other N",
    )
    add("--node-scrapes", type=int, default=None, help="per load (default 300)")
    add("--netns-runs", type=int, default=None, help="reads per netns size (default 30)")
    add(
        "--netns-sleepers",
        action="store_true",
        help="also start `sleep` in every namespace (the collectors find namespaces through "
        "containerd shims, so these only add /proc entries; off by default)",
    )
    add("--df-runs", type=int, default=None, help="docker system df -v runs per N (default 5)")
    add(
        "--veth-sh-max",
        type=int,
        default=50,
        help="run veth.sh only when the smallest N > 0 is at most this; else extrapolate",
    )
    add("--skip-node-exporter", action="store_true")
    add("--json", type=Path, default=Path("bench/results-host.json"))
    add("--keep", action="store_true", help="leave the containers running (the default)")
    add("--teardown", action="store_true", help="remove the dhe-bench containers at the end")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "containers": [0, 5] if quick else [0, 50, 100, 250],
        "netns": [0, 50, 100] if quick else [0, 250, 500, 1000, 2000],
        "samples": 10 if quick else 100,
        "scrapes": 200 if quick else 2000,
        "node_scrapes": 50 if quick else 300,
        "idle": 5.0 if quick else 20.0,
        "rss_samples": 100 if quick else 1000,
        "netns_runs": 5 if quick else 30,
        "df_runs": 2 if quick else 5,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.warmup = 2.0 if quick else 5.0
    return args


def run_n(
    client: Any,
    n: int,
    args: argparse.Namespace,
    report: Report,
    version: str,
    *,
    per_exec: float | None,
) -> float | None:
    """Sections 1, 2 and 4 at N containers; returns the docker exec cost once measured."""
    print(f"\n-- N={n}: ensuring containers", flush=True)
    ensure_containers(client, n)
    positive = sorted(m for m in args.containers if m > 0)
    if positive and n == positive[0]:
        print("   veth.sh / docker exec cost", flush=True)
        run_sh = n <= args.veth_sh_max and bool(
            shutil.which("ifconfig") and shutil.which("ethtool")
        )
        v, per_exec = veth_pairing.measure(client, n, 5, 0, run_veth_sh=run_sh, per_exec=None)
        report.veth_sh = VethSh(n, v.veths, v.veth_sh_seconds, per_exec)
    print("   sample cost", flush=True)
    cost = sample_cost.measure(n, args.samples, slow_samples=min(10, args.samples))
    report.sample_cost.append(cost)
    wall, veths = network_pass(max(5, args.netns_runs))
    report.network_pass_wall_ms_p50[n] = wall
    if report.veth_sh is not None and per_exec is not None:
        report.veth_sh.extrapolated[n] = round(per_exec * veths * (n + 1) / 2, 1)
    print("   docker system df -v", flush=True)
    report.docker_df.append(docker_df(n, args.df_runs, _layers(cost)))
    print("   exporter process", flush=True)
    bg = background_rate(pid_of("dockerd"), 2.0)
    report.exporter.append(exporter_run(n, args, bg))
    if version:
        print("   node_exporter", flush=True)
        report.node_exporter.append(node_exporter_run(n, args.node_scrapes, version))
    return per_exec


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: namespaces, bridges and other processes' /proc")
    started = time.monotonic()
    report = Report(
        args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    client = docker.from_env()
    version = "" if args.skip_node_exporter else ensure_node_exporter()
    cleanup_netns()  # leftovers of an interrupted run
    report.dockerd_background_ms_per_s = round(background_rate(pid_of("dockerd"), 3.0), 2)
    per_exec: float | None = None
    try:
        for n in args.containers:
            per_exec = run_n(client, n, args, report, version, per_exec=per_exec)
            print(f"   done at {time.monotonic() - started:.0f}s", flush=True)
        if args.netns:
            print(f"\n-- synthetic namespaces {args.netns}", flush=True)
            report.netns_containers = len(client.containers.list())
            report.netns = netns_section(args.netns, args.netns_runs, args.netns_sleepers)
            links = [float(p.links) for p in report.netns]
            if len(report.netns) >= 2:
                report.netns_fits = [
                    fit("network CPU", links, [p.network_cpu_ms_mean for p in report.netns]),
                    fit("network wall", links, [p.network_wall_ms_p50 for p in report.netns]),
                    fit("processes CPU", links, [p.processes_cpu_ms_mean for p in report.netns]),
                ]
    finally:
        # Whatever was measured is printed and kept, even when a later step failed.
        report.ratios = ratios(report)
        report.seconds = round(time.monotonic() - started, 1)
        print_report(report)
        print(f"\n{report.seconds:.0f} s in all; JSON in {args.json}")
        args.json.write_text(json.dumps(asdict(report), indent=1) + "\n")
        if args.teardown:
            ensure_containers(client, 0)


def ratios(r: Report) -> dict[str, float]:
    out: dict[str, float] = {}
    for e, ne in zip(r.exporter, r.node_exporter, strict=False):
        n = e.containers
        if ne.scrape_gzip.p99_ms:
            out[f"exporter_p99_over_node_p99_gzip@{n}"] = round(
                e.scrape_gzip.p99_ms / ne.scrape_gzip.p99_ms, 2
            )
        if ne.scrape_plain.p99_ms:
            out[f"exporter_p99_over_node_p99_plain@{n}"] = round(
                e.scrape_plain.p99_ms / ne.scrape_plain.p99_ms, 2
            )
        node_cpu = ne.scrape_gzip.server_cpu_ms_per_scrape
        if e.scrape_gzip.server_cpu_ms_per_scrape > 0:
            out[f"node_cpu_per_scrape_over_exporter_cpu_per_scrape@{n}"] = round(
                node_cpu / e.scrape_gzip.server_cpu_ms_per_scrape, 2
            )
        # node_exporter reads the host on every scrape; the exporter once per sample.
        if e.cpu_ms_per_sample > 0:
            out[f"node_cpu_per_scrape_over_exporter_cpu_per_sample_and_scrape@{n}"] = round(
                node_cpu / (e.cpu_ms_per_sample + e.scrape_gzip.server_cpu_ms_per_scrape), 2
            )
    if r.veth_sh is not None:
        for n, extrapolated in r.veth_sh.extrapolated.items():
            seconds = extrapolated
            if r.veth_sh.seconds_measured is not None and n == r.veth_sh.containers_measured:
                seconds = r.veth_sh.seconds_measured
            if wall := r.network_pass_wall_ms_p50.get(n):
                out[f"veth_sh_over_network_pass@{n}"] = round(seconds * 1000 / wall)
    for d in r.docker_df:
        if d.layers_wall_ms_p50:
            out[f"docker_df_v_over_layers_wall@{d.containers}"] = round(
                d.wall_ms_p50 / d.layers_wall_ms_p50, 2
            )
        if d.layers_dockerd_cpu_ms_mean > 0:
            out[f"docker_df_v_over_layers_dockerd_cpu@{d.containers}"] = round(
                d.dockerd_cpu_ms_mean / d.layers_dockerd_cpu_ms_mean, 2
            )
    return out


if __name__ == "__main__":
    main()
