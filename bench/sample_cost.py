"""What one sample costs: per collector wall and CPU time, dockerd's extra CPU, render time,
exposition size and the exporter's RSS over many samples, with N real containers running.

    sudo .venv/bin/python -m bench.sample_cost --containers 0 5 50 --samples 200

Starts N containers from the test bed's image (scripts/testbed.sh) labeled dhe-bench, removes
them afterwards, prints a table and writes JSON (--json). Traffic: none; it reads /proc and
the local Docker socket only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import docker

from bench.common import cpu_ms_of, ensure_containers, percentile, pid_of, rss_mb
from exporter.collectors import all_collectors
from exporter.metrics import render
from exporter.selfmetrics import write_self_metrics
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Snapshot


@dataclass(frozen=True)
class CollectorCost:
    collector: str
    wall_ms_p50: float
    wall_ms_p95: float
    cpu_ms_mean: float


@dataclass(frozen=True)
class Result:
    containers: int
    samples: int
    collectors: list[CollectorCost]
    dockerd_cpu_ms_per_sample: float
    render_ms_p50: float
    exposition_bytes: int
    series: int
    rss_mb_after_warmup: float
    rss_mb_end: float


def measure(n: int, samples: int) -> Result:
    settings = Settings(collectors=tuple(c.name for c in all_collectors()))
    defs = all_collectors()
    sources = {c.name: c.build(settings) for c in defs}
    writers = [*(c.write for c in defs), write_self_metrics]
    walls: dict[str, list[float]] = {c.name: [] for c in defs}
    cpus: dict[str, list[float]] = {c.name: [] for c in defs}
    renders: list[float] = []
    dockerd = pid_of("dockerd")
    snapshot = Snapshot()
    text = b""
    rss_warm = 0.0
    dockerd_before = cpu_ms_of(dockerd)
    for i in range(samples):
        for c in defs:
            wall0, cpu0 = time.perf_counter(), time.thread_time()
            facts = sources[c.name].read()
            cpus[c.name].append((time.thread_time() - cpu0) * 1000)
            walls[c.name].append((time.perf_counter() - wall0) * 1000)
            snapshot = snapshot.with_state(
                CollectorState(c.name, True, walls[c.name][-1] / 1000, time.time(), facts)
            )
        r0 = time.perf_counter()
        text = render(snapshot, writers)
        renders.append((time.perf_counter() - r0) * 1000)
        if i == min(9, samples - 1):
            rss_warm = rss_mb()
    dockerd_ms = (cpu_ms_of(dockerd) - dockerd_before) / samples
    for source in sources.values():
        source.close()

    return Result(
        containers=n,
        samples=samples,
        collectors=[
            CollectorCost(
                name,
                round(percentile(walls[name], 0.5), 2),
                round(percentile(walls[name], 0.95), 2),
                round(statistics.fmean(cpus[name]), 2),
            )
            for name in walls
        ],
        dockerd_cpu_ms_per_sample=round(dockerd_ms, 2),
        render_ms_p50=round(percentile(renders, 0.5), 2),
        exposition_bytes=len(text),
        series=sum(1 for line in text.splitlines() if line and not line.startswith(b"#")),
        rss_mb_after_warmup=round(rss_warm, 1),
        rss_mb_end=round(rss_mb(), 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, nargs="+", default=[0, 5, 50])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    args = parser.parse_args()
    client = docker.from_env()
    results = []
    try:
        for n in args.containers:
            ensure_containers(client, n)
            results.append(measure(n, args.samples))
    finally:
        if not args.keep:
            ensure_containers(client, 0)
    print(
        f"{'N':>4} {'collector':<11} {'wall p50':>9} {'wall p95':>9} {'cpu mean':>9}"
        f" {'dockerd cpu':>12} {'render':>7} {'series':>7} {'bytes':>8} {'rss warm':>9}"
        f" {'rss end':>8}"
    )
    for r in results:
        for c in r.collectors:
            print(
                f"{r.containers:>4} {c.collector:<11} {c.wall_ms_p50:>7.2f}ms"
                f" {c.wall_ms_p95:>7.2f}ms {c.cpu_ms_mean:>7.2f}ms"
                f" {r.dockerd_cpu_ms_per_sample:>10.2f}ms {r.render_ms_p50:>5.2f}ms"
                f" {r.series:>7} {r.exposition_bytes:>8} {r.rss_mb_after_warmup:>7.1f}MB"
                f" {r.rss_mb_end:>6.1f}MB"
            )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")


if __name__ == "__main__":
    main()
