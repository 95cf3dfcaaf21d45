"""bench.host_bench's results as tables."""

from __future__ import annotations

from bench import sample_cost
from bench.results import Report


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
                ms(s.containerd_cpu_ms_per_sample - layers_cost(s).containerd_cpu_ms_mean),
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


def layers_cost(s: sample_cost.Result) -> sample_cost.CollectorCost:
    return next(c for c in s.collectors if c.collector == "layers")
