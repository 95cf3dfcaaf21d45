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
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import docker

from bench import sample_cost, veth_pairing
from bench.common import ensure_containers, pid_of
from bench.netns_scaling import cleanup_netns, fit, netns_section
from bench.peers import docker_df, ensure_node_exporter, network_pass, node_exporter_run
from bench.results import Report, VethSh
from bench.scraping import background_rate, exporter_run
from bench.tables import layers_cost, print_report


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
    add("--publish", action="store_true", help="every container publishes 80/tcp (issue 15)")
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
    ensure_containers(client, n, publish=args.publish)
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
    report.docker_df.append(docker_df(n, args.df_runs, layers_cost(cost)))
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
