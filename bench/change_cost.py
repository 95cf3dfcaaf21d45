"""Issue 24's benchmark: what the whole exporter process costs per sample when little or nothing
changes, for one or more trees, their runs alternated on the same machine.

    sudo .venv/bin/python -m bench.change_cost \\
        --tree main=/work/build/base/.venv/bin/python --tree branch=.venv/bin/python

Each tree is a venv's python; its `docker-host-exporter` beside it is started as users run it
(`--sample.interval 2s` on a loopback port), scraped for /metrics with gzip every
--scrape-interval seconds as Prometheus would, and its utime+stime read from /proc/PID/stat over
--window seconds after --warmup: CPU per sample is everything the process did in the window
(sampling, rendering for the scrapes, compressing) over the samples in it. Scenes, each at 250
containers (label dhe-bench):
  idle       250 idle containers (bench.common.ensure_containers, publish=False);
  published  250 containers publishing 80/tcp, each served by busybox httpd (publish=True);
  churn      the idle 250, while a loop of this script starts a container and removes it again
             --churn times a minute (so --churn starts and --churn removals a minute).
Runs alternate the trees so that both see the same machine, and the scenes that run on the same
containers (idle, churn) alternate as well (see phases()); each round's order is reversed in the
next (idle main, idle branch, churn main, churn branch, then churn branch ... idle main: see
round_order()), so that a machine drifting over the benchmark weighs on every ratio alike.

After each run's window (the churn stopped, then two intervals' settling) the long-running
exporter's exposition is compared with a from-scratch render by the same tree in a process of
its own (one Sampler.sample_once, the same flags): byte for byte, and as a set of series, with
the families in VOLATILE left out (their values move between two readings of an unchanged host).

Traffic: loopback HTTP to the exporters this script starts, the local Docker socket, /proc.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker

from bench.common import IMAGE, LABEL, cpu_ms_of, ensure_containers, rss_mb
from bench.scraping import LAST_SUCCESS, free_port, get, samples_of, series_of, start, stop
from bench.tables import table

SCENES = ("idle", "published", "churn")
T = TypeVar("T")

# Families left out of the comparison with a from-scratch render, and why: a second reading of
# an unchanged host gives other values for them, whichever tree reads.
VOLATILE_PREFIXES = (
    # The exporter process's own CPU, RSS, fds and start time: two processes, two values.
    "process_",
)
VOLATILE = frozenset(
    {
        # When and how long a collector ran.
        "docker_host_collector_duration_seconds",
        "docker_host_collector_last_success_timestamp_seconds",
        # Kernel traffic counters: they move with any packet (our own scrapes are loopback, but
        # the containers' veths and Docker's NAT rules see others' test traffic on this host).
        "docker_host_veth_receive_bytes_total",
        "docker_host_veth_receive_packets_total",
        "docker_host_veth_receive_errors_total",
        "docker_host_veth_receive_drops_total",
        "docker_host_veth_transmit_bytes_total",
        "docker_host_veth_transmit_packets_total",
        "docker_host_veth_transmit_errors_total",
        "docker_host_veth_transmit_drops_total",
        "docker_host_nat_dnat_bytes_total",
        "docker_host_nat_dnat_packets_total",
        "docker_host_nat_masquerade_bytes_total",
        "docker_host_nat_masquerade_packets_total",
        "docker_host_conntrack_stat_drop_total",
        "docker_host_conntrack_stat_early_drop_total",
        "docker_host_conntrack_stat_insert_failed_total",
        "docker_host_conntrack_stat_invalid_total",
        "docker_host_conntrack_stat_search_restart_total",
        # The conntrack table's occupancy: every connection (each scrape of ours) adds an entry
        # for minutes, and the long-running exporter reads the table once a minute.
        "docker_host_conntrack_entries",
        "docker_host_conntrack_dump_entries",
        "docker_host_conntrack_dump_skipped_entries",
        "docker_host_conntrack_attributed",
        "docker_host_conntrack_unattributed_entries",
        "docker_host_container_conntrack_entries",
        "docker_host_container_conntrack_tcp_entries",
        # Every process on the host: the from-scratch render's own process is counted by the
        # long-running exporter when it samples meanwhile, and so is anybody's process start.
        # (Per-container process counts, docker_host_container_processes, are compared.)
        "docker_host_procfs_processes",
    }
)


def family_of(line: bytes) -> str:
    """The family a line of the text format belongs to (a comment names it second)."""
    if line.startswith(b"#"):
        parts = line.split(b" ", 3)
        return parts[2].decode() if len(parts) > 2 else ""
    end = min((i for i in (line.find(b"{"), line.find(b" ")) if i >= 0), default=len(line))
    return line[:end].decode()


def volatile(family: str) -> bool:
    return family in VOLATILE or family.startswith(VOLATILE_PREFIXES)


def stable_lines(text: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if line and not volatile(family_of(line))]


# One from-scratch sample by the tree's own code, with the flags the long-running one was given:
# only interfaces both trees have (cli.build_parser, cli.settings_from, Sampler.sample_once).
FRESH = """
import sys
from exporter import cli
from exporter.collectors import all_collectors
from exporter.sampler import Sampler
collectors = all_collectors()
settings = cli.settings_from(cli.build_parser(collectors).parse_args(sys.argv[1:]), collectors)
enabled = [c for c in collectors if c.name in settings.collectors]
sampler = Sampler(((c, c.source(settings)) for c in enabled), settings)
sampler.sample_once()
text = sampler.store.exposition.text
sys.stdout.buffer.write(text if isinstance(text, bytes) else text.encode())
"""


# The from-scratch sample's own interval: its timeout (80 % of the interval, at most
# --sample.timeout's 10 s) must not cut a run short on a busy machine; nothing it exposes
# depends on the interval.
FRESH_INTERVAL = ["--sample.interval", "60s"]


def fresh_render(python: str, flags: Sequence[str]) -> bytes:
    # -I: the tree's own exporter package, never the one in the working directory (`-c` puts
    # the working directory first on sys.path: main's from-scratch render was this tree's).
    done = subprocess.run(
        [python, "-I", "-c", FRESH, *flags, *FRESH_INTERVAL],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def failed(text: bytes) -> list[str]:
    """Collectors whose last run failed or timed out (their series may be missing)."""
    return sorted(c for c, v in samples_of(text, "docker_host_collector_success").items() if not v)


@dataclass(frozen=True)
class Check:
    byte_identical: bool
    series_identical: bool
    attempts: int
    compared_lines: int
    # The comparison restricted to the lines that name a benchmark container (dhe-bench-*):
    # on a shared machine others' containers and dockerds come and go under the comparison.
    bench_lines_identical: bool = True
    bench_lines: int = 0
    failed_long: list[str] = field(default_factory=list)  # collectors failed, last attempt
    failed_fresh: list[str] = field(default_factory=list)
    # family -> lines only in the long-running exposition / only in the fresh one (last attempt)
    differing: dict[str, list[int]] = field(default_factory=dict)
    example: list[str] = field(default_factory=list)


def compare(python: str, flags: Sequence[str], port: int, attempts: int = 3) -> Check:
    """The long-running exposition before and after a from-scratch render against the render;
    equal to either is equal (the host may have changed under one of them: others' tests run
    beside). Retried up to `attempts` times; the last difference is kept."""
    differing: dict[str, list[int]] = {}
    example: list[str] = []
    fresh: list[bytes] = []
    failures: tuple[list[str], list[str]] = ([], [])
    ours: list[bytes] = []
    ours_equal = False
    for attempt in range(1, attempts + 1):
        before = stable_lines(get(port))
        fresh_text = fresh_render(python, flags)
        fresh = stable_lines(fresh_text)
        after_text = get(port)
        after = stable_lines(after_text)
        failures = (failed(after_text), failed(fresh_text))
        ours = bench_only(fresh)
        ours_equal = ours in (bench_only(before), bench_only(after))
        if fresh in (before, after):
            return Check(True, True, attempt, len(fresh), ours_equal, len(ours))
        series_equal = any(set(fresh) == set(x) for x in (before, after))
        if series_equal:  # same series, another order: report that, do not retry
            return Check(False, True, attempt, len(fresh), ours_equal, len(ours))
        only_long, only_fresh = set(after) - set(fresh), set(fresh) - set(after)
        differing = {}
        for line in only_long:
            differing.setdefault(family_of(line), [0, 0])[0] += 1
        for line in only_fresh:
            differing.setdefault(family_of(line), [0, 0])[1] += 1
        example = ["long: " + x.decode() for x in sorted(only_long)[:3]] + [
            "fresh: " + x.decode() for x in sorted(only_fresh)[:3]
        ]
        time.sleep(2)
    return Check(
        False, False, attempts, len(fresh), ours_equal, len(ours), *failures, differing, example
    )


def bench_only(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if b'"dhe-bench-' in line]


class Scraper:
    """Scrapes /metrics as Prometheus does (gzip asked for), every `interval` seconds, in a
    thread of its own, until stopped: the exporter as users run it is scraped, and what a scrape
    costs (rendering a new snapshot, compressing it) is part of its CPU. 0: never."""

    def __init__(self, port: int, interval: float) -> None:
        self.port = port
        self.interval = interval
        self.stopping = threading.Event()
        self.durations_ms: list[float] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self.stopping.wait(max(0.0, next_at - time.monotonic())):
            started = time.monotonic()
            try:
                get(self.port, gzipped=True)
                self.durations_ms.append(round(1000 * (time.monotonic() - started), 2))
            except (OSError, RuntimeError) as exc:
                self.errors.append(str(exc)[:200])
            next_at += self.interval

    def __enter__(self) -> Scraper:
        if self.interval > 0:
            self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(60)


class Churn:
    """Starts a dhe-bench container and removes it again, `per_minute` times a minute, in a
    thread of its own, until stopped; at most one extra container at a time."""

    def __init__(self, per_minute: int) -> None:
        self.period = 60.0 / per_minute
        self.stopping = threading.Event()
        self.starts = 0
        self.removals = 0
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        client = docker.from_env()
        current: Any = None
        i = 0
        next_at = time.monotonic()
        while not self.stopping.is_set():
            try:
                if current is None:
                    current = client.containers.run(
                        IMAGE,
                        ["sleep", "360000"],
                        detach=True,
                        labels={LABEL: "1"},
                        name=f"dhe-bench-churn-{i}-{os.getpid()}",
                    )
                    self.starts += 1
                    i += 1
                else:
                    current.remove(force=True)
                    current = None
                    self.removals += 1
            except docker.errors.DockerException as exc:
                self.errors.append(str(exc)[:200])
            # Half a period between a start and its removal: `per_minute` of each a minute.
            next_at += self.period / 2
            self.stopping.wait(max(0.0, next_at - time.monotonic()))
        if current is not None:
            current.remove(force=True)
            self.removals += 1

    def __enter__(self) -> Churn:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(60)


@dataclass(frozen=True)
class Run:
    scene: str
    tree: str
    run: int
    cpu_ms_per_sample: float
    samples: int
    window_s: float
    rss_mb_end: float
    series: int
    exposition_bytes: int
    layers_ran_in_window: bool
    churn_starts: int
    churn_removals: int
    scrapes: int  # in the window, gzip asked for (--scrape-interval)
    scrape_ms_median: float  # wall time of a scrape, as the scraper saw it
    scrape_ms_max: float
    scrape_errors: int
    check: Check


def measure(scene: str, tree: str, python: str, run: int, args: argparse.Namespace) -> Run:
    exporter = str(Path(python).with_name("docker-host-exporter"))
    port = free_port()
    flags = ["--sample.interval", f"{args.interval:g}s", "--log.level", "error"]
    proc = start([exporter, "--web.listen-address", f"127.0.0.1:{port}", *flags], port)
    try:
        deadline = time.monotonic() + 180
        while not {"containers", "network", "layers"} <= samples_of(get(port), LAST_SUCCESS).keys():
            if time.monotonic() > deadline:
                raise SystemExit(f"{tree}: not every collector sampled within 180 s")
            time.sleep(0.5)
        with Scraper(port, args.scrape_interval) as scraper:
            time.sleep(args.warmup)
            with Churn(args.churn) if scene == "churn" else _Nothing() as churn:
                before = samples_of(get(port), LAST_SUCCESS)
                scraped0 = len(scraper.durations_ms)
                cpu0, t0 = cpu_ms_of(proc.pid), time.monotonic()
                time.sleep(args.window)
                cpu1, t1 = cpu_ms_of(proc.pid), time.monotonic()
                scrapes = scraper.durations_ms[scraped0:]
                after = samples_of(get(port), LAST_SUCCESS)
        samples = max(1, round((t1 - t0) / args.interval))
        time.sleep(2 * args.interval + 1)  # the churn's last change sampled, and confirmed
        text = get(port)
        check = compare(python, flags, port)
        rss = rss_mb(proc.pid)
    finally:
        stop(proc)
    return Run(
        scene=scene,
        tree=tree,
        run=run,
        cpu_ms_per_sample=round((cpu1 - cpu0) / samples, 2),
        samples=samples,
        window_s=round(t1 - t0, 2),
        rss_mb_end=round(rss, 1),
        series=series_of(text),
        exposition_bytes=len(text),
        layers_ran_in_window=before.get("layers") != after.get("layers"),
        churn_starts=getattr(churn, "starts", 0),
        churn_removals=getattr(churn, "removals", 0),
        scrapes=len(scrapes),
        scrape_ms_median=round(statistics.median(scrapes), 2) if scrapes else 0.0,
        scrape_ms_max=max(scrapes, default=0.0),
        scrape_errors=len(scraper.errors),
        check=check,
    )


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def summarize(runs: list[Run], trees: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for scene in SCENES:
        for tree in trees:
            mine = [r for r in runs if r.scene == scene and r.tree == tree]
            if not mine:
                continue
            cpu = [r.cpu_ms_per_sample for r in mine]
            scraped = [r.scrape_ms_median for r in mine if r.scrapes]
            out.setdefault(scene, {})[tree] = {
                "cpu_ms_per_sample_median": round(statistics.median(cpu), 2),
                "cpu_ms_per_sample_min": min(cpu),
                "cpu_ms_per_sample_max": max(cpu),
                "rss_mb_end_median": round(statistics.median(r.rss_mb_end for r in mine), 1),
                "series": mine[-1].series,
                "runs": len(mine),
                "exposition_identical": sum(r.check.byte_identical for r in mine),
                "series_identical": sum(r.check.series_identical for r in mine),
                "bench_lines_identical": sum(r.check.bench_lines_identical for r in mine),
                "scrapes": sum(r.scrapes for r in mine),
                "scrape_ms_median": round(statistics.median(scraped), 2) if scraped else 0.0,
                "scrape_ms_max": max(r.scrape_ms_max for r in mine),
            }
    return out


def ratios(
    summary: dict[str, dict[str, Any]], trees: list[str], interval: float, churn_rate: int
) -> dict[str, float]:
    """Each later tree's median over the first tree's (the targets: idle <= 0.40, published
    <= 0.50), each tree's churn over its idle (target <= 1.5), and what one change (a start or
    a removal) costs beyond idle, in ms: a figure that, unlike the ratio, does not grow as
    idle shrinks."""
    out: dict[str, float] = {}
    base = trees[0]
    for scene, per_tree in summary.items():
        for tree in trees[1:]:
            if tree in per_tree and base in per_tree:
                b = per_tree[base]["cpu_ms_per_sample_median"]
                out[f"{scene}:{tree}/{base}"] = round(
                    per_tree[tree]["cpu_ms_per_sample_median"] / b, 3
                )
    for tree in trees:
        idle = summary.get("idle", {}).get(tree)
        churn = summary.get("churn", {}).get(tree)
        if idle and churn:
            out[f"churn/idle:{tree}"] = round(
                churn["cpu_ms_per_sample_median"] / idle["cpu_ms_per_sample_median"], 3
            )
            extra = churn["cpu_ms_per_sample_median"] - idle["cpu_ms_per_sample_median"]
            changes_per_sample = 2 * churn_rate * interval / 60.0
            out[f"churn extra ms per change:{tree}"] = round(extra / changes_per_sample, 2)
    return out


def print_tables(summary: dict[str, dict[str, Any]], ratio: dict[str, float]) -> None:
    rows = [
        [
            scene,
            tree,
            f"{s['cpu_ms_per_sample_median']:.1f}",
            f"{s['cpu_ms_per_sample_min']:.1f}-{s['cpu_ms_per_sample_max']:.1f}",
            str(s["runs"]),
            f"{s['rss_mb_end_median']:.1f}",
            str(s["series"]),
            f"{s['exposition_identical']}/{s['runs']} ({s['series_identical']}/{s['runs']})",
            f"{s['bench_lines_identical']}/{s['runs']}",
            f"{s['scrapes']}: {s['scrape_ms_median']:.1f} / {s['scrape_ms_max']:.1f}",
        ]
        for scene, per_tree in summary.items()
        for tree, s in per_tree.items()
    ]
    table(
        "whole process per sample (median of alternated runs; ms, MB)",
        [
            "scene",
            "tree",
            "CPU",
            "min-max",
            "runs",
            "RSS",
            "series",
            "identical (series)",
            "dhe-bench lines identical",
            "scrapes: median / max ms",
        ],
        rows,
    )
    table("ratios", ["what", "value"], [[k, f"{v:.3f}"] for k, v in ratio.items()])


def phases(scenes: Sequence[str]) -> list[tuple[str, ...]]:
    """The scenes grouped by the containers they run on, in the order asked: idle and churn
    share the same 250 idle containers, so their runs alternate too (idle, churn, idle, ...),
    and the churn/idle ratio is not skewed by the machine drifting between two blocks of runs;
    published needs containers of its own."""
    shared = tuple(scene for scene in scenes if scene != "published")
    grouped: list[tuple[str, ...]] = []
    for scene in scenes:
        group = (scene,) if scene == "published" else shared
        if group not in grouped:
            grouped.append(group)
    return grouped


def round_order(scenes: Sequence[str], trees: list[T], run: int) -> list[tuple[str, T]]:
    """The measurements of round `run`: every scene for every tree, in an order reversed every
    other round (ABBA). The machine drifts over a long benchmark (its 250 containers, dockerd
    and the kernel age, other load comes and goes): in a fixed order the scene or tree measured
    last in each round would see a later machine every time, and a ratio of two would carry
    that drift. Reversed every other round, a steady drift weighs on both alike."""
    order = list(itertools.product(scenes, trees))
    return order if run % 2 == 0 else order[::-1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--tree", action="append", default=[], help="NAME=PYTHON (a venv's python); repeat")
    add("--scenes", nargs="*", choices=SCENES, default=list(SCENES))
    add("--containers", type=int, default=250)
    add("--runs", type=int, default=3, help="runs per tree and scene (default 3)")
    add("--interval", type=float, default=2.0, help="--sample.interval, s (default 2)")
    add("--warmup", type=float, default=10.0, help="s after every collector sampled once")
    add("--window", type=float, default=40.0, help="s of CPU accounting per run")
    add("--churn", type=int, default=10, help="container starts (and removals) a minute")
    add(
        "--scrape-interval",
        type=float,
        default=15.0,
        help="s between gzip scrapes of /metrics, as Prometheus scrapes (default 15, the "
        "interval of Prometheus's example config; 0: not scraped)",
    )
    add("--json", type=Path, default=Path("bench/results-change.json"))
    add("--teardown", action="store_true", help="remove the dhe-bench containers at the end")
    args = parser.parse_args(argv)
    if not args.tree:
        args.tree = [f"this={Path(sys.executable)}"]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the exporter reads other processes' /proc")
    trees = dict(t.split("=", 1) for t in args.tree)
    client = docker.from_env()
    runs: list[Run] = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t_start = time.monotonic()
    try:
        for scenes in phases(args.scenes):
            print(f"-- {', '.join(scenes)}: ensuring {args.containers} containers", flush=True)
            ensure_containers(client, args.containers, publish=scenes[0] == "published")
            for run in range(args.runs):
                for scene, (tree, python) in round_order(scenes, list(trees.items()), run):
                    r = measure(scene, tree, python, run, args)
                    runs.append(r)
                    print(
                        f"   {scene} {tree} #{run}: {r.cpu_ms_per_sample} ms/sample, "
                        f"RSS {r.rss_mb_end} MB, {r.series} series, identical "
                        f"{r.check.byte_identical} (series {r.check.series_identical}, "
                        f"dhe-bench lines {r.check.bench_lines_identical} "
                        f"of {r.check.bench_lines}"
                        f"{', ' + json.dumps(r.check.differing) if r.check.differing else ''})"
                        f" failed long {r.check.failed_long} fresh {r.check.failed_fresh}",
                        flush=True,
                    )
    finally:
        summary = summarize(runs, list(trees))
        ratio = ratios(summary, list(trees), args.interval, args.churn)
        print_tables(summary, ratio)
        report = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "started": started,
            "seconds": round(time.monotonic() - t_start, 1),
            "volatile_families": sorted(VOLATILE) + [p + "*" for p in VOLATILE_PREFIXES],
            "summary": summary,
            "ratios": ratio,
            "runs": [asdict(r) for r in runs],
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"JSON in {args.json}")
        if args.teardown:
            ensure_containers(client, 0)


if __name__ == "__main__":
    main()
