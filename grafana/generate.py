"""Generates the Grafana dashboards in grafana/dashboards/ from code.

    python grafana/generate.py          # rewrite the JSON files
    python grafana/generate.py --check  # exit 1 if they differ from what is committed

Code rather than hand-written JSON: five dashboards share one datasource/job/instance template,
one selector and one panel layout, and a test (tests/unit/test_dashboards.py) runs every query
against the metric catalogue. No Grafana SDK is needed for a few dict builders; the output is
plain file-provisionable JSON (schemaVersion 39, timeseries/stat/table panels only).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
SEL = 'job=~"$job", instance=~"$instance"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The namespaces whose sharing with the host matters (user and cgroup are shared by default).
HOST_NS = 'namespace=~"pid|net|ipc|uts|mnt"'
INSTANCES = 'label_values(docker_host_exporter_build_info{job=~"$job"}, instance)'


def q(expr: str) -> str:
    """Every query is scoped to the chosen job and instances."""
    return expr.replace("{}", "{" + SEL + "}").replace("{,", "{" + SEL + ", ")


class Layout:
    """Left to right, top to bottom, on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.x = self.y = self.row_height = 0
        self.ids = iter(range(1, 1000))

    def place(self, width: int, height: int) -> dict[str, int]:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        pos = {"x": self.x, "y": self.y, "w": width, "h": height}
        self.x += width
        self.row_height = max(self.row_height, height)
        return pos


def target(expr: str, legend: str = "", instant: bool = False, ref: str = "A") -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DATASOURCE, "expr": q(expr), "refId": ref}
    if legend:
        t["legendFormat"] = legend
    if instant:
        t.update(instant=True, range=False, format="table")
    return t


def stat(
    layout: Layout,
    title: str,
    expr: str,
    *,
    unit: str = "short",
    description: str = "",
    width: int = 4,
    thresholds: tuple[float, ...] = (),
) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}] + [{"color": "red", "value": t} for t in thresholds]
    return {
        "id": next(layout.ids),
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": layout.place(width, 4),
        "targets": [target(expr)],
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
        },
    }


def timeseries(
    layout: Layout,
    title: str,
    exprs: list[tuple[str, str]],
    *,
    unit: str = "short",
    description: str = "",
    width: int = 12,
) -> dict[str, Any]:
    return {
        "id": next(layout.ids),
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": layout.place(width, 8),
        "targets": [target(e, legend, ref=chr(65 + i)) for i, (e, legend) in enumerate(exprs)],
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"fillOpacity": 10}}, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def table(
    layout: Layout,
    title: str,
    expr: str,
    columns: list[str],
    *,
    description: str = "",
    width: int = 24,
    height: int = 8,
) -> dict[str, Any]:
    """An instant query as a table, showing only `columns` (labels, and Value)."""
    return {
        "id": next(layout.ids),
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": layout.place(width, height),
        "targets": [target(expr, instant=True)],
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "__name__": True, "job": True},
                    "indexByName": {c: i for i, c in enumerate(["instance", *columns])},
                },
            },
            {"id": "filterFieldsByName", "options": {"include": {"names": ["instance", *columns]}}},
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm"},
    }


def dashboard(
    uid: str, title: str, description: str, panels: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["docker", "docker-host-exporter"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "job",
                    "label": "Job",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {
                        "query": "label_values(docker_host_exporter_build_info, job)",
                        "refId": "job",
                    },
                    "definition": "label_values(docker_host_exporter_build_info, job)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "current": {},
                    "sort": 1,
                },
                {
                    "name": "instance",
                    "label": "Instance",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": INSTANCES, "refId": "instance"},
                    "definition": INSTANCES,
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "current": {},
                    "sort": 1,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def overview() -> dict[str, Any]:
    lay = Layout()
    return dashboard(
        "dhe-overview",
        "Docker host: overview",
        "Containers, isolation, zombies, orphans and drift across the chosen hosts.",
        [
            stat(lay, "Running containers", 'sum(docker_host_containers{, state="running"})'),
            stat(
                lay,
                "Host namespaces shared",
                "sum(docker_host_container_namespace_shared_with_host{, " + HOST_NS + "})",
                description="Container namespaces (pid, net, ipc, uts, mnt) the host owns.",
                thresholds=(1,),
            ),
            stat(
                lay,
                "Zombie processes",
                "sum(docker_host_container_zombie_processes{})",
                thresholds=(1,),
            ),
            stat(
                lay,
                "Orphaned veths",
                'sum(docker_host_veths{, status="orphaned"})',
                thresholds=(1,),
            ),
            stat(lay, "Orphaned shims", "sum(docker_host_shim_orphaned{})", thresholds=(1,)),
            stat(
                lay,
                "Drifted daemon keys",
                "sum(docker_host_daemon_config_drift{})",
                thresholds=(1,),
            ),
            timeseries(
                lay,
                "Containers by state",
                [("sum by (state) (docker_host_containers{})", "{{state}}")],
            ),
            timeseries(
                lay,
                "Collector run time",
                [
                    (
                        "max by (collector) (docker_host_collector_duration_seconds{})",
                        "{{collector}}",
                    )
                ],
                unit="s",
            ),
            table(
                lay,
                "Collectors",
                "docker_host_collector_success{}",
                ["collector", "Value"],
                description="1: the last run succeeded. 0: failed or timed out; the reason is "
                "in the exporter's log.",
                width=12,
            ),
            table(
                lay,
                "Containers and their PID 1",
                "docker_host_container_pid1_info{}",
                ["container", "host_pid", "shim_pid"],
                width=12,
            ),
            table(
                lay,
                "Containers sharing host namespaces",
                "docker_host_container_namespace_shared_with_host{, " + HOST_NS + "}",
                ["container", "namespace", "Value"],
                width=12,
            ),
            table(
                lay,
                "Processes and zombies per container",
                "docker_host_container_processes{}",
                ["container", "Value"],
                width=12,
            ),
        ],
    )


def network() -> dict[str, Any]:
    lay = Layout()
    rate = "rate(docker_host_veth_{}_total{}[$__rate_interval])"
    return dashboard(
        "dhe-network",
        "Docker host: network plumbing",
        "Every host veth paired with its container (no docker exec), bridges and "
        "their ports, per-container traffic as the host counts it, orphaned veths.",
        [
            stat(lay, "Paired veths", 'sum(docker_host_veths{, status="paired"})'),
            stat(
                lay,
                "Orphaned veths",
                'sum(docker_host_veths{, status="orphaned"})',
                thresholds=(1,),
            ),
            stat(lay, "Bridges", "count(docker_host_bridge_info{})"),
            stat(lay, "Bridge ports", "sum(docker_host_bridge_ports{})"),
            stat(
                lay,
                "Shared network namespaces",
                "count(docker_host_container_network_shared_with{}) or vector(0)",
                description="Containers in another container's network namespace "
                "(--network=container:X).",
            ),
            table(
                lay,
                "Veth pairs (veth.sh, without exec)",
                "docker_host_veth_info{}",
                ["interface", "container", "container_interface", "bridge", "network"],
            ),
            table(
                lay,
                "Bridges (brctl show)",
                "docker_host_bridge_port_state{}",
                ["bridge", "port", "state"],
                width=12,
            ),
            table(
                lay,
                "Docker networks behind the bridges",
                "docker_host_bridge_info{}",
                ["bridge", "network", "driver", "subnet", "stp"],
                width=12,
            ),
            timeseries(
                lay,
                "Received by containers (host side transmits)",
                [
                    (
                        f"sum by (container) ({rate.replace('{}', 'transmit_bytes', 1)})",
                        "{{container}}",
                    )
                ],
                unit="Bps",
            ),
            timeseries(
                lay,
                "Sent by containers (host side receives)",
                [
                    (
                        f"sum by (container) ({rate.replace('{}', 'receive_bytes', 1)})",
                        "{{container}}",
                    )
                ],
                unit="Bps",
            ),
            timeseries(
                lay,
                "Drops and errors per container",
                [
                    (
                        f"sum by (container) ({rate.replace('{}', 'receive_drops', 1)})",
                        "rx drops {{container}}",
                    ),
                    (
                        f"sum by (container) ({rate.replace('{}', 'transmit_drops', 1)})",
                        "tx drops {{container}}",
                    ),
                    (
                        f"sum by (container) ({rate.replace('{}', 'receive_errors', 1)})",
                        "rx errors {{container}}",
                    ),
                ],
                unit="pps",
                width=24,
            ),
            table(
                lay,
                "Orphaned veths",
                "docker_host_veth_orphaned{}",
                ["interface", "reason", "bridge"],
            ),
        ],
    )


def nat() -> dict[str, Any]:
    lay = Layout()
    return dashboard(
        "dhe-nat",
        "Docker host: NAT",
        "MASQUERADE and DNAT rules in both firewall backends, their counters, "
        "the rules Docker's networks and published ports need but lack, and the "
        "connection-tracking table every NATed connection takes an entry in.",
        [
            table(
                lay,
                "Docker's firewall backend",
                "docker_host_nat_backend_info{}",
                ["backend"],
                width=8,
                height=4,
            ),
            stat(
                lay,
                "Rules split across backends",
                "max(docker_host_nat_rules_split_across_backends{})",
                thresholds=(1,),
            ),
            stat(
                lay,
                "Missing MASQUERADE rules",
                "sum(docker_host_nat_masquerade_missing{})",
                thresholds=(1,),
            ),
            stat(lay, "Missing DNAT rules", "sum(docker_host_nat_dnat_missing{})", thresholds=(1,)),
            stat(lay, "nat rules", "sum by (backend) (docker_host_nat_rules{})"),
            table(
                lay,
                "MASQUERADE rules",
                "docker_host_nat_masquerade_rules{}",
                ["backend", "table", "chain", "source", "out_interface", "negated", "Value"],
            ),
            table(
                lay,
                "DNAT rules (published ports)",
                "docker_host_nat_dnat_rules{}",
                ["backend", "chain", "protocol", "host_port", "destination", "Value"],
            ),
            timeseries(
                lay,
                "Masqueraded traffic",
                [
                    (
                        "sum by (source) "
                        "(rate(docker_host_nat_masquerade_bytes_total{}[$__rate_interval]))",
                        "{{source}}",
                    )
                ],
                unit="Bps",
            ),
            timeseries(
                lay,
                "DNAT traffic",
                [
                    (
                        "sum by (host_port, destination) "
                        "(rate(docker_host_nat_dnat_bytes_total{}[$__rate_interval]))",
                        "{{host_port}} → {{destination}}",
                    )
                ],
                unit="Bps",
            ),
            table(
                lay,
                "Expected MASQUERADE rules (1 = missing)",
                "docker_host_nat_masquerade_missing{}",
                ["network", "subnet", "bridge", "Value"],
                width=12,
            ),
            table(
                lay,
                "Expected DNAT rules (1 = missing)",
                "docker_host_nat_dnat_missing{}",
                ["container", "protocol", "host_port", "container_port", "Value"],
                width=12,
            ),
            *conntrack_row(lay),
        ],
    )


def conntrack_row(lay: Layout) -> list[dict[str, Any]]:
    """Every NATed connection is tracked: the conntrack table, and who fills it."""
    counter = "sum(increase(docker_host_conntrack_stat_{}_total{{}}[$__rate_interval]))"
    return [
        stat(
            lay,
            "Conntrack table used",
            "max(docker_host_conntrack_entries{} / docker_host_conntrack_entries_limit{})",
            unit="percentunit",
            description="Entries against nf_conntrack_max; when full, new connections of "
            "every container are dropped.",
            thresholds=(0.8, 0.95),
            width=6,
        ),
        stat(
            lay,
            "Conntrack drops",
            counter.format("drop"),
            description="Packets dropped for want of a conntrack entry (table full).",
            thresholds=(1,),
            width=6,
        ),
        stat(
            lay,
            "Conntrack insert failures",
            counter.format("insert_failed"),
            thresholds=(1,),
            width=6,
        ),
        stat(
            lay,
            "Entries not attributed (dump cap)",
            "sum(docker_host_conntrack_dump_skipped_entries{})",
            description="Entries the last dump left unread at --collector.conntrack.max-entries.",
            thresholds=(1,),
            width=6,
        ),
        timeseries(
            lay,
            "Tracked connections and the limit",
            [
                ("sum by (instance) (docker_host_conntrack_entries{})", "{{instance}} entries"),
                ("max by (instance) (docker_host_conntrack_entries_limit{})", "{{instance}} limit"),
            ],
        ),
        timeseries(
            lay,
            "Tracked connections per container (top 10)",
            [
                (
                    "topk(10, sum by (container) (docker_host_container_conntrack_entries{}))",
                    "{{container}}",
                )
            ],
        ),
        timeseries(
            lay,
            "Conntrack drops, insert failures, early drops",
            [
                (counter.format(name).replace("sum(", "sum by (instance) (", 1), legend)
                for name, legend in (
                    ("drop", "{{instance}} drop"),
                    ("insert_failed", "{{instance}} insert failed"),
                    ("early_drop", "{{instance}} early drop"),
                )
            ],
        ),
        table(
            lay,
            "TCP connections per container by state",
            "docker_host_container_conntrack_tcp_entries{}",
            ["container", "state", "Value"],
            width=12,
        ),
    ]


def layers() -> dict[str, Any]:
    lay = Layout()
    return dashboard(
        "dhe-layers",
        "Docker host: image layers",
        "What each image shares and what it alone costs, what sharing saves, and "
        "what containers write into their read/write layers.",
        [
            stat(lay, "Layers on disk", "sum(docker_host_layers_bytes{})", unit="bytes", width=6),
            stat(
                lay,
                "Without sharing",
                "sum(docker_host_images_bytes_without_sharing{})",
                unit="bytes",
                width=6,
            ),
            stat(
                lay,
                "Saved by sharing",
                "sum(docker_host_sharing_saved_bytes{})",
                unit="bytes",
                width=6,
            ),
            stat(lay, "Layers", "sum(docker_host_layers{})", width=6),
            timeseries(
                lay,
                "Unique bytes per image (what removing it frees)",
                [
                    (
                        "topk(10, docker_host_image_unique_bytes{} * on (instance, image_id) "
                        "group_left (tags) docker_host_image_info{})",
                        "{{tags}}",
                    )
                ],
                unit="bytes",
            ),
            timeseries(
                lay,
                "Shared bytes per image",
                [
                    (
                        "topk(10, docker_host_image_shared_bytes{} * on (instance, image_id) "
                        "group_left (tags) docker_host_image_info{})",
                        "{{tags}}",
                    )
                ],
                unit="bytes",
            ),
            table(
                lay,
                "Images",
                "docker_host_image_info{}",
                ["image_id", "tags", "dangling"],
                width=12,
            ),
            table(
                lay,
                "Most shared layers (top K by bytes saved)",
                "docker_host_layer_sharing_saved_bytes{}",
                ["layer", "Value"],
                width=12,
            ),
            timeseries(
                lay,
                "Largest read/write layers",
                [("topk(10, docker_host_container_rw_layer_bytes{})", "{{container}}")],
                unit="bytes",
                width=24,
            ),
        ],
    )


def daemon() -> dict[str, Any]:
    lay = Layout()
    return dashboard(
        "dhe-daemon",
        "Docker host: daemon configuration",
        "daemon.json against the running dockerd: drift, what a SIGHUP applies, "
        "conflicts that break the next restart.",
        [
            stat(
                lay,
                "Config file valid",
                "min(docker_host_daemon_config_file_valid{})",
                description="0: dockerd would not start with the file as it is.",
                width=6,
            ),
            stat(
                lay,
                "Keys needing a reload",
                'sum(docker_host_daemon_config_drift{, applies_on="reload"})',
                thresholds=(1,),
                width=6,
            ),
            stat(
                lay,
                "Keys needing a restart",
                'sum(docker_host_daemon_config_drift{, applies_on="restart"})',
                thresholds=(1,),
                width=6,
            ),
            stat(
                lay,
                "Flag/file conflicts",
                "sum(docker_host_daemon_config_flag_conflict{})",
                thresholds=(1,),
                width=6,
            ),
            table(
                lay,
                "Drift per key (1 = file and daemon differ)",
                "docker_host_daemon_config_drift{}",
                ["key", "applies_on", "Value"],
                width=12,
            ),
            table(
                lay,
                "Running daemon",
                "docker_host_daemon_info{}",
                ["version", "storage_driver", "logging_driver", "cgroup_driver", "default_runtime"],
                width=12,
            ),
            timeseries(
                lay,
                "File modified, last reload, daemon start",
                [
                    (
                        "max(docker_host_daemon_config_file_modified_timestamp_seconds{}) * 1000",
                        "file modified",
                    ),
                    (
                        "max(docker_host_daemon_last_reload_timestamp_seconds{}) * 1000",
                        "last reload",
                    ),
                    (
                        'max(docker_host_daemon_process_start_time_seconds{, process="dockerd"})'
                        " * 1000",
                        "dockerd started",
                    ),
                ],
                unit="dateTimeAsIso",
                width=12,
            ),
            table(
                lay,
                "Command-line flags (a SIGHUP never changes them)",
                "docker_host_daemon_command_line_flag{}",
                ["key"],
                width=12,
            ),
        ],
    )


DASHBOARDS = {
    "overview": overview,
    "network": network,
    "nat": nat,
    "layers": layers,
    "daemon": daemon,
}


def render() -> Iterator[tuple[Path, str]]:
    for name, build in DASHBOARDS.items():
        yield OUT / f"{name}.json", json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for path, text in render():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}: run python grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
