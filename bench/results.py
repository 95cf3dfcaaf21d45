"""What bench.host_bench measures, as the dataclasses it writes to JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench import sample_cost


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
