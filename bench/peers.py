"""The peers, measured in the same run: `docker system df -v` against the layers collector,
node_exporter under the same scrape load, and the network collector's pass for veth.sh
(section 4 of bench.host_bench)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time

from bench import sample_cost
from bench.common import cpu_ms_of, percentile, pid_of, rss_mb
from bench.netns_scaling import timed
from bench.results import DockerDf, NodeExporterRun
from bench.scraping import free_port, get, scrape_load, series_of, start, stop
from exporter.collectors.network.source import NetworkSource
from exporter.tick import Host

NODE_EXPORTER = "prometheus-node-exporter"


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
    reader, host = NetworkSource(timeout=10.0), Host.open()
    try:
        facts = reader.sample(host.tick())[0]
        wall, _ = timed(lambda: reader.read(host.tick()), runs)
    finally:
        reader.close()
        host.close()
    return wall, sum(1 for link in facts.links if link.kind == "veth")
