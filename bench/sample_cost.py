"""What one sample costs: per collector wall and CPU time, dockerd's and containerd's extra CPU,
render time, exposition size and the exporter's RSS over many samples, with N real containers
running.

    sudo .venv/bin/python -m bench.sample_cost --containers 0 5 50 --samples 200

Starts N containers from the test bed's image (scripts/testbed.sh) labeled dhe-bench, removes
them afterwards, prints a table and writes JSON (--json). Traffic: none; it reads /proc and
the local Docker socket only.
"""

from __future__ import annotations

import argparse
import json
import os
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
from exporter.tick import Host


@dataclass(frozen=True)
class CollectorCost:
    collector: str
    wall_ms_p50: float
    wall_ms_p95: float
    cpu_ms_mean: float
    # utime + stime the daemons gained while this collector's read() ran, per run (clock-tick
    # resolution, 10 ms, so only a mean over many runs means anything).
    dockerd_cpu_ms_mean: float
    containerd_cpu_ms_mean: float
    runs: int
    # CPU per run after the first (which fills caches, and in which the ports collector reads
    # every container's listeners): what a collector costs from then on.
    cpu_ms_steady: float = 0.0


@dataclass(frozen=True)
class Result:
    containers: int
    samples: int
    collectors: list[CollectorCost]
    # A whole sample (every collector once): the sums of the per-collector means.
    dockerd_cpu_ms_per_sample: float
    # The same without the collectors on slow intervals of their own (layers every 2 min,
    # conntrack every minute): what every --sample.interval costs.
    cpu_ms_per_sample_without_layers: float
    dockerd_cpu_ms_per_sample_without_layers: float
    containerd_cpu_ms_per_sample: float
    # Every containerd shim's CPU over the whole run, per sample (background included).
    shims_cpu_ms_per_sample: float
    # dockerd CPU outside any collector's read(), per sample: background load and late work.
    dockerd_cpu_ms_outside_reads_per_sample: float
    render_ms_p50: float
    exposition_bytes: int
    series: int
    rss_mb_after_warmup: float
    rss_mb_end: float


SLOW_COLLECTORS = ("layers", "conntrack")


def shim_pids() -> list[int]:
    return [
        int(e.name)
        for e in os.scandir("/proc")
        if e.name.isdigit() and _comm(e.path).startswith("containerd-shim")
    ]


def _comm(path: str) -> str:
    try:
        return Path(path, "comm").read_text().strip()
    except OSError:
        return ""


def cpu_ms_of_all(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_ms_of(pid)
        except (OSError, IndexError):
            continue  # exited since listed
    return total


def measure(n: int, samples: int, *, slow_samples: int | None = None) -> Result:
    """Every collector's read() `samples` times in turn, then a render; the slow collectors
    (layers) only in the first `slow_samples` samples when given (their facts stay in the
    snapshot, as they would between two of their runs)."""
    settings = Settings(collectors=tuple(c.name for c in all_collectors()))
    defs = all_collectors()
    sources = {c.name: c.source(settings) for c in defs}
    writers = [*(c.write_all(Settings()) for c in defs), write_self_metrics]
    walls: dict[str, list[float]] = {c.name: [] for c in defs}
    cpus: dict[str, list[float]] = {c.name: [] for c in defs}
    dockerd_ms: dict[str, float] = dict.fromkeys(walls, 0.0)
    containerd_ms: dict[str, float] = dict.fromkeys(walls, 0.0)
    renders: list[float] = []
    dockerd, containerd = pid_of("dockerd"), pid_of("containerd")
    shims = shim_pids()
    snapshot = Snapshot()
    text = b""
    rss_warm = 0.0
    dockerd_before, shims_before = cpu_ms_of(dockerd), cpu_ms_of_all(shims)
    host = Host.open(
        str(settings.procfs), settings.docker_host, settings.call_timeout("containers")
    )
    for i in range(samples):
        tick = host.tick(float(i))
        for c in defs:
            if c.name in SLOW_COLLECTORS and slow_samples is not None and i >= slow_samples:
                continue
            d0, c0 = cpu_ms_of(dockerd), cpu_ms_of(containerd)
            wall0, cpu0 = time.perf_counter(), time.thread_time()
            # One tick per sample, as the sampler dispatches them: collectors of a tick share
            # one /proc scan (taken by whichever reads first) and one container list.
            facts = sources[c.name].read(tick)
            cpus[c.name].append((time.thread_time() - cpu0) * 1000)
            walls[c.name].append((time.perf_counter() - wall0) * 1000)
            dockerd_ms[c.name] += cpu_ms_of(dockerd) - d0
            containerd_ms[c.name] += cpu_ms_of(containerd) - c0
            snapshot = snapshot.with_state(
                CollectorState(c.name, True, walls[c.name][-1] / 1000, time.time(), facts)
            )
        r0 = time.perf_counter()
        text = render(snapshot, writers)
        renders.append((time.perf_counter() - r0) * 1000)
        if i == min(9, samples - 1):
            rss_warm = rss_mb()
    dockerd_total = cpu_ms_of(dockerd) - dockerd_before
    shims_total = cpu_ms_of_all(shims) - shims_before
    for source in sources.values():
        source.close()
    host.close()

    costs = [
        CollectorCost(
            name,
            round(percentile(walls[name], 0.5), 2),
            round(percentile(walls[name], 0.95), 2),
            round(statistics.fmean(cpus[name]), 2),
            round(dockerd_ms[name] / len(walls[name]), 2),
            round(containerd_ms[name] / len(walls[name]), 2),
            len(walls[name]),
            round(statistics.fmean(cpus[name][1:] or cpus[name]), 2),
        )
        for name in walls
    ]
    fast = [c for c in costs if c.collector not in SLOW_COLLECTORS]
    return Result(
        containers=n,
        samples=samples,
        collectors=costs,
        dockerd_cpu_ms_per_sample=round(sum(c.dockerd_cpu_ms_mean for c in costs), 2),
        cpu_ms_per_sample_without_layers=round(sum(c.cpu_ms_mean for c in fast), 2),
        dockerd_cpu_ms_per_sample_without_layers=round(sum(c.dockerd_cpu_ms_mean for c in fast), 2),
        containerd_cpu_ms_per_sample=round(sum(c.containerd_cpu_ms_mean for c in costs), 2),
        shims_cpu_ms_per_sample=round(shims_total / samples, 2),
        dockerd_cpu_ms_outside_reads_per_sample=round(
            (dockerd_total - sum(dockerd_ms.values())) / samples, 2
        ),
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
    parser.add_argument(
        "--layers-samples",
        type=int,
        default=None,
        help="run the layers collector only in the first K samples (default: in every one)",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    parser.add_argument(
        "--publish", action="store_true", help="every container publishes 80/tcp (issue 15)"
    )
    args = parser.parse_args()
    client = docker.from_env()
    results = []
    try:
        for n in args.containers:
            ensure_containers(client, n, publish=args.publish)
            results.append(measure(n, args.samples, slow_samples=args.layers_samples))
    finally:
        if not args.keep:
            ensure_containers(client, 0, publish=args.publish)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")


def print_table(results: list[Result]) -> None:
    print(
        f"{'N':>4} {'collector':<11} {'wall p50':>9} {'wall p95':>9} {'cpu mean':>9}"
        f" {'steady':>8} {'dockerd cpu':>12} {'containerd':>11} {'render':>7} {'series':>7}"
        f" {'bytes':>8}"
        f" {'rss warm':>9} {'rss end':>8}"
    )
    for r in results:
        for c in r.collectors:
            print(
                f"{r.containers:>4} {c.collector:<11} {c.wall_ms_p50:>7.2f}ms"
                f" {c.wall_ms_p95:>7.2f}ms {c.cpu_ms_mean:>7.2f}ms {c.cpu_ms_steady:>6.2f}ms"
                f" {c.dockerd_cpu_ms_mean:>10.2f}ms {c.containerd_cpu_ms_mean:>9.2f}ms"
                f" {r.render_ms_p50:>5.2f}ms {r.series:>7} {r.exposition_bytes:>8}"
                f" {r.rss_mb_after_warmup:>7.1f}MB {r.rss_mb_end:>6.1f}MB"
            )
        print(
            f"{r.containers:>4} {'all-layers':<11} {'':>9} {'':>9}"
            f" {r.cpu_ms_per_sample_without_layers:>7.2f}ms"
            f" {r.dockerd_cpu_ms_per_sample_without_layers:>10.2f}ms"
            f" {'':>11} shims {r.shims_cpu_ms_per_sample:.2f}ms/sample,"
            f" dockerd outside reads {r.dockerd_cpu_ms_outside_reads_per_sample:.2f}ms/sample"
        )


if __name__ == "__main__":
    main()
