"""The real exporter process under scrape load: scrape latency with and without gzip, its CPU
and dockerd's per sample, its RSS over many samples (sections 1 and 2 of bench.host_bench)."""

from __future__ import annotations

import argparse
import gzip
import http.client
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench import sample_cost
from bench.common import cpu_ms_of, percentile, pid_of, rss_mb
from bench.results import ExporterRun, ScrapeLoad
from exporter.collectors import by_name

EXPORTER = Path(sys.executable).with_name("docker-host-exporter")
SCRAPERS = 10
LAST_SUCCESS = "docker_host_collector_last_success_timestamp_seconds"
DURATION = "docker_host_collector_duration_seconds"


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
