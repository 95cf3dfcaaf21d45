"""Generates the Grafana dashboards in grafana/dashboards/ from code.

    python -m grafana.generate                   # rewrite the JSON files
    python -m grafana.generate --check           # exit 1 if they differ from what is committed
    python -m grafana.generate --set time_from=now-24h --out /tmp/dashboards
    python -m grafana.generate --settings mine.yml  # a YAML mapping; --list-settings says which

Code rather than hand-written JSON: six dashboards share one set of variables, links and
annotations, every query is scoped to them by grafana/build.py, every panel's description is the
HELP of the families it reads, and tests/unit/test_dashboards.py checks the result (units,
descriptions, links, freshness, and that every declared family is on a dashboard, in an alert,
or excused in docs/metrics.md). The output is plain file-provisionable Grafana JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: python grafana/generate.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grafana.build import (
    BAD_FROM_1,
    DRIFT,
    GOOD_FROM_1,
    OK_MISSING,
    ORPHAN,
    SPLIT,
    SUCCESS,
    VALID,
    YES_BAD,
    YES_GOOD,
    Board,
    Drill,
    Mapping,
    Query,
    Settings,
    Variable,
    label,
    load_settings,
    thresholds,
    value,
)
from mixin import settings as mixin_settings
from mixin.settings import SettingsError

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

RATE = "[$__rate_interval]"

CONTAINER = Variable("container", "Container", "docker_host_container_info")
NETWORK = Variable("network", "Network", "docker_host_bridge_info")
INTERFACE = Variable("interface", "Host veth", "docker_host_veth_peer_namespace_info")
IMAGE = Variable("image_id", "Image", "docker_host_image_info")

TO_TOPOLOGY = Drill("dhe-topology", "container", "Plumbing of ${__value.raw}")
TO_CONTAINER = Drill("dhe-overview", "container", "Processes and namespaces of ${__value.raw}")
TO_VETH = Drill("dhe-network", "interface", "Veth ${__value.raw}")
TO_NETWORK = Drill("dhe-network", "network", "Network ${__value.raw}")
TO_IMAGE = Drill("dhe-layers", "image_id", "Layers of ${__value.raw}")
TO_HOST = Drill("dhe-topology", "instance", "Plumbing of ${__value.raw}")

DOWN_WHEN_0 = Mapping(((0, "down", "red"),))
MISSING_COUNT = Mapping(((0, "ok", "green"),), ranges=((1, None, "missing", "red"),), null_text="-")
NO_PORTS = Mapping((), null_text="none")


def keyed(expr: str, *labels: str, by: tuple[str, ...] = ()) -> str:
    """One row per distinct `labels` (joined into the label `row`, the table's join key),
    keeping the labels `by`."""
    kept = ", ".join(("row", *by))
    parts = ", ".join(f'"{name}"' for name in labels)
    return f'max by ({kept}) (label_join({expr}, "row", "/", {parts}))'


def by_family(metric: str) -> str:
    """A published-port series with the family its host_address is in (as nat's series have):
    ipv6 for an address with a colon, else ipv4."""
    v4 = f'label_replace({metric}, "family", "ipv4", "host_address", "[^:]*")'
    return f'label_replace({v4}, "family", "ipv6", "host_address", ".*:.*")'


def per_host(expr: str, collector: str = "") -> str:
    """`expr` aggregated by instance, 0 on a host where it has no series but the collector that
    writes it succeeded (not on a host that does not run it: that is no data, not zero)."""
    if not collector:
        base = "docker_host_exporter_build_info"
    else:
        base = f'docker_host_collector_success{{collector="{collector}"}} == 1'
    return f"({expr}) or on (instance) (0 * max by (instance) ({base}))"


def host_stat(
    board: Board,
    title: str,
    expr: str,
    *,
    unit: str = "none",
    lead: str = "",
    steps: dict[str, Any] = BAD_FROM_1,
    mapping: Mapping | None = None,
    width: int = 4,
) -> None:
    board.stat(
        title,
        [Query(expr, "{{instance}}")],
        unit=unit,
        lead=lead,
        steps=steps,
        mapping=mapping,
        width=width,
    )


INSTANCE = label("instance", "host", TO_HOST)


def overview(s: Settings) -> Board:
    # The namespaces whose sharing with the host matters (user and cgroup are shared by default).
    host_ns = f'namespace=~"{s.host_namespaces}"'
    b = Board(
        "dhe-overview",
        "Docker host: overview",
        "Which host is in trouble and why: containers, isolation, zombies, orphans, NAT and "
        "drift per host, then per container.",
        variables=(CONTAINER,),
        container_annotations=True,
    )
    running = 'sum by (instance) (docker_host_containers{state="running"})'
    sharing = per_host(
        "count by (instance) (docker_host_container_namespace_shared_with_host{"
        + host_ns
        + "} == 1 unless on (instance, container) docker_host_exporter_container_info)",
        "processes",
    )
    zombies = per_host("sum by (instance) (docker_host_container_zombie_processes)", "processes")
    orphaned_veths = per_host('sum by (instance) (docker_host_veths{status="orphaned"})', "network")
    orphaned_shims = per_host("sum by (instance) (docker_host_shim_orphaned)", "processes")
    drifted = per_host("sum by (instance) (docker_host_daemon_config_drift)", "daemon")
    # One value column per query after the first: (query, title, unit, mapping, thresholds).
    cells: list[tuple[str, str, str, Mapping | None, dict[str, Any] | None]] = [
        (per_host(running, "containers"), "running", "none", None, None),
        (
            'sum by (instance) (docker_host_daemon_processes{process="dockerd"})',
            "dockerd",
            "none",
            DOWN_WHEN_0,
            GOOD_FROM_1,
        ),
        (zombies, "zombies", "none", None, BAD_FROM_1),
        (sharing, "sharing host namespaces", "none", None, BAD_FROM_1),
        (orphaned_veths, "orphaned veths", "none", None, BAD_FROM_1),
        (orphaned_shims, "orphaned shims", "none", None, BAD_FROM_1),
        (
            per_host("sum by (instance) (docker_host_nat_masquerade_missing)", "nat"),
            "MASQUERADE missing",
            "none",
            None,
            BAD_FROM_1,
        ),
        (
            per_host("sum by (instance) (docker_host_nat_dnat_missing)", "nat"),
            "DNAT missing",
            "none",
            None,
            BAD_FROM_1,
        ),
        (
            per_host("sum by (instance) (docker_host_filter_rule_missing)", "firewall"),
            "filter rules missing",
            "none",
            None,
            BAD_FROM_1,
        ),
        (drifted, "drifted keys", "none", None, thresholds((1, "orange"))),
        (
            "min by (instance) (docker_host_daemon_config_file_valid)",
            "daemon.json",
            "none",
            VALID,
            GOOD_FROM_1,
        ),
        (
            "max by (instance) (docker_host_conntrack_entries"
            " / docker_host_conntrack_entries_limit)",
            "conntrack used",
            "percentunit",
            None,
            thresholds((0.8, "orange"), (0.95, "red")),
        ),
        (
            per_host("count by (instance) (docker_host_collector_success == 0)"),
            "collectors failing",
            "none",
            None,
            BAD_FROM_1,
        ),
        (
            per_host("count by (instance) (docker_host_privilege_missing == 1)"),
            "privileges missing",
            "none",
            None,
            BAD_FROM_1,
        ),
    ]
    b.row("Per host")
    b.table(
        "Hosts",
        [Query("max by (instance, version) (docker_host_exporter_build_info)")]
        + [Query(expr) for expr, _, _, _, _ in cells],
        [INSTANCE, label("version", "exporter")]
        + [
            value(chr(66 + i), title, unit, mapping, steps)
            for i, (_, title, unit, mapping, steps) in enumerate(cells)
        ],
        sort="host",
        descending=False,
        join_on="instance",
        lead="One row per host: a red cell says which host is in trouble and with what. "
        "Click a host for its plumbing.",
        height=7,
    )
    host_stat(b, "Running containers", running, steps=thresholds(base="blue"))
    host_stat(
        b,
        "Containers sharing host namespaces",
        sharing,
        lead="Containers in the host's pid, net, ipc, uts or mnt namespace, the exporter's own "
        "container left out (it shares them by design).",
    )
    host_stat(b, "Zombie processes", zombies)
    host_stat(b, "Orphaned veths", orphaned_veths)
    host_stat(b, "Orphaned shims", orphaned_shims)
    host_stat(b, "Drifted daemon keys", drifted, steps=thresholds((1, "orange")))

    b.row("Containers")
    b.timeseries(
        "Containers by state",
        [Query("sum by (instance, state) (docker_host_containers)", "{{state}} on {{instance}}")],
        unit="none",
        stack=True,
    )
    b.timeseries(
        "Processes on the host and in its containers",
        [
            Query("max by (instance) (docker_host_procfs_processes)", "host {{instance}}"),
            Query(
                "sum by (instance) (docker_host_container_processes)",
                "in containers {{instance}}",
            ),
            Query(
                "sum by (instance) (docker_host_container_zombie_processes)",
                "zombies {{instance}}",
            ),
        ],
        unit="none",
    )
    row = ("instance", "container")
    b.table(
        "Processes and zombies per container",
        [
            Query(
                keyed(
                    "docker_host_container_info",
                    *row,
                    by=("instance", "container", "image", "image_id", "state", "network_mode"),
                )
            ),
            Query(keyed("docker_host_container_processes", *row)),
            Query(keyed("docker_host_container_zombie_processes", *row)),
            Query(keyed("docker_host_container_pid1_info", *row, by=("host_pid", "shim_pid"))),
            Query(keyed("docker_host_container_pid1_start_time_seconds", *row) + " * 1000"),
            Query(keyed("docker_host_container_created_timestamp_seconds", *row) + " * 1000"),
            Query(keyed("docker_host_container_namespaces_unreadable", *row)),
        ],
        [
            INSTANCE,
            label("container", link=TO_TOPOLOGY),
            label("image"),
            label("image_id", "image id", TO_IMAGE),
            label("state"),
            label("network_mode", "network mode"),
            value("B", "processes", "none"),
            value("C", "zombies", "none", steps=BAD_FROM_1),
            label("host_pid", "PID 1 (host)"),
            label("shim_pid", "shim PID"),
            value("E", "started", "dateTimeAsIso"),
            value("F", "created", "dateTimeAsIso"),
            value("G", "namespaces unreadable", "none", steps=BAD_FROM_1),
        ],
        sort="zombies",
        join_on="row",
        lead="Every container with its PID 1 as the host sees it, its processes and zombies. "
        "Click a container for its plumbing, an image for its layers.",
        height=10,
    )
    b.table(
        "Containers sharing host namespaces",
        [
            Query(
                "docker_host_container_namespace_shared_with_host{"
                + host_ns
                + "} == 1 unless on (instance, container) docker_host_exporter_container_info"
            )
        ],
        [INSTANCE, label("container", link=TO_TOPOLOGY), label("namespace")],
        sort="container",
        descending=False,
        lead="Only the containers that do share one (pid, net, ipc, uts, mnt); the exporter's "
        "own container is left out, it shares them by design.",
        width=12,
    )
    b.table(
        "Namespaces of every container",
        [Query("docker_host_container_namespace_info")],
        [
            INSTANCE,
            label("container", link=TO_TOPOLOGY),
            label("namespace"),
            label("inode"),
        ],
        sort="inode",
        lead="Sorted by inode: containers that share a namespace sit together.",
        width=12,
    )
    b.table(
        "containerd shims",
        [
            Query(
                keyed(
                    "docker_host_shim_info",
                    "instance",
                    "shim_pid",
                    by=("instance", "shim_pid", "container_id", "container"),
                )
            ),
            Query(keyed("docker_host_shim_orphaned", "instance", "shim_pid")),
        ],
        [
            INSTANCE,
            label("shim_pid", "shim PID"),
            label("container_id", "container id"),
            label("container", link=TO_TOPOLOGY),
            value("B", "orphaned", "none", YES_BAD),
        ],
        sort="orphaned",
        join_on="row",
        width=12,
    )
    b.table(
        "dockerd and containerd",
        [
            Query(
                "docker_host_daemon_process_start_time_seconds * 1000",
            )
        ],
        [INSTANCE, label("process"), label("pid", "PID"), value("A", "started", "dateTimeAsIso")],
        sort="process",
        descending=False,
        width=12,
    )

    b.row("Exporter")
    b.table(
        "Collectors",
        [
            Query(
                keyed(
                    "docker_host_collector_success",
                    "instance",
                    "collector",
                    by=("instance", "collector"),
                )
            ),
            Query(keyed("docker_host_collector_duration_seconds", "instance", "collector")),
            Query(
                keyed(
                    "docker_host_collector_last_success_timestamp_seconds", "instance", "collector"
                )
                + " * 1000"
            ),
        ],
        [
            INSTANCE,
            label("collector"),
            value("A", "last run", "none", SUCCESS),
            value("B", "run time", "s", steps=thresholds((5, "orange"))),
            value("C", "last success", "dateTimeAsIso"),
        ],
        sort="last run",
        descending=False,
        join_on="row",
        lead="A failed run's reason is in the exporter's log.",
        width=12,
    )
    b.timeseries(
        "Collector run time",
        [
            Query(
                "max by (instance, collector) (docker_host_collector_duration_seconds)",
                "{{collector}} on {{instance}}",
            )
        ],
        unit="s",
        width=12,
    )
    b.timeseries(
        "Full re-reads of change-driven collectors",
        [
            Query(
                "sum by (instance, collector, reason) "
                "(increase(docker_host_full_rereads_total[$__rate_interval]))",
                "{{collector}} {{reason}} on {{instance}}",
            ),
            Query(
                "sum by (instance, collector) "
                "(increase(docker_host_change_events_lost_total[$__rate_interval]))",
                "{{collector}} lost events on {{instance}}",
            ),
        ],
        unit="short",
        width=12,
        lead="Collectors re-read only what the kernel or the engine says changed; everything "
        "again at start, on their resync interval, and after lost events (a steady rise: the "
        "host changes faster than the exporter follows, and every run is a full one).",
    )
    host_stat(
        b,
        "Privileges missing",
        per_host("count by (instance) (docker_host_privilege_missing == 1)"),
        lead="Capabilities a collector was refused in its last run: what it cannot judge is in "
        "the README's privileges table.",
        width=6,
    )
    host_stat(
        b,
        "Series dropped by the cap",
        per_host("sum by (instance) (docker_host_series_dropped)"),
        lead="Series left out over --metrics.max-series-per-family.",
        width=6,
    )
    return b


def network(s: Settings) -> Board:
    b = Board(
        "dhe-network",
        "Docker host: network plumbing",
        "Every host veth paired with its container (no docker exec), who holds the far end of "
        "each, bridges and their ports, per-container traffic as the host counts it.",
        variables=(CONTAINER, NETWORK, INTERFACE),
        container_annotations=True,
    )
    host_stat(
        b,
        "Paired veths",
        'sum by (instance) (docker_host_veths{status="paired"})',
        steps=thresholds(base="blue"),
    )
    host_stat(
        b,
        "Orphaned veths",
        per_host('sum by (instance) (docker_host_veths{status="orphaned"})', "network"),
    )
    host_stat(
        b,
        "Bridges",
        "count by (instance) (docker_host_bridge_info)",
        steps=thresholds(base="blue"),
    )
    host_stat(
        b,
        "Bridge ports",
        "sum by (instance) (docker_host_bridge_ports)",
        steps=thresholds(base="blue"),
    )
    host_stat(
        b,
        "Containers in another's network namespace",
        per_host("count by (instance) (docker_host_container_network_shared_with)", "network"),
        lead="Containers started with --network=container:X; they use X's veth.",
        steps=thresholds(base="blue"),
    )
    host_stat(
        b,
        "Network namespaces unreadable",
        "max by (instance) (docker_host_network_namespaces_unreadable)",
    )
    b.timeseries(
        "Host veths by status",
        [Query("sum by (instance, status) (docker_host_veths)", "{{status}} on {{instance}}")],
        unit="none",
        width=24,
        height=7,
        stack=True,
    )
    veth = ("instance", "interface")
    paired = "and on (instance, interface) docker_host_veth_info"
    b.table(
        "Veth pairs (veth.sh, without exec)",
        [
            Query(
                keyed(
                    "docker_host_veth_info",
                    *veth,
                    by=(
                        "instance",
                        "interface",
                        "container",
                        "container_interface",
                        "bridge",
                        "network",
                    ),
                )
            ),
            Query(
                keyed(
                    f"(docker_host_veth_peer_namespace_info {paired})",
                    *veth,
                    by=("owner_kind",),
                )
            ),
            Query(keyed(f"(rate(docker_host_veth_transmit_bytes_total{RATE}) {paired})", *veth)),
            Query(keyed(f"(rate(docker_host_veth_receive_bytes_total{RATE}) {paired})", *veth)),
            Query(
                keyed(
                    f"((rate(docker_host_veth_receive_drops_total{RATE}) + "
                    f"rate(docker_host_veth_transmit_drops_total{RATE})) {paired})",
                    *veth,
                )
            ),
        ],
        [
            INSTANCE,
            label("interface", "host veth", TO_VETH),
            label("container", link=TO_TOPOLOGY),
            label("container_interface", "in the container"),
            label("bridge"),
            label("network", link=TO_NETWORK),
            label("owner_kind", "far end held by"),
            value("C", "container receives", "Bps"),
            value("D", "container sends", "Bps"),
            value("E", "drops", "pps", steps=thresholds((0.001, "orange"))),
        ],
        sort="container receives",
        join_on="row",
        lead="Each host veth and the container interface at its far end, matched on the peer's "
        "namespace id and ifindex. Rates are the host's counters: a container cannot fake them.",
        height=9,
    )
    b.table(
        "Every host veth: who holds its far end, orphaned or not",
        [
            Query(
                keyed(
                    "docker_host_veth_peer_namespace_info",
                    *veth,
                    by=("instance", "interface", "bridge", "owner_kind", "owner"),
                )
            ),
            Query(
                keyed(
                    "(docker_host_veth_orphaned or on (instance, interface) "
                    "0 * docker_host_veth_peer_namespace_info)",
                    *veth,
                )
            ),
            Query(keyed("docker_host_veth_orphaned", *veth, by=("reason",))),
        ],
        [
            INSTANCE,
            label("interface", "host veth", TO_VETH),
            label("bridge"),
            label("owner_kind", "held by"),
            label("owner"),
            value("B", "status", "none", ORPHAN),
            label("reason", "why orphaned"),
        ],
        sort="status",
        join_on="row",
        lead="Who holds the namespace at the far end, from the kernel's mount tables and "
        "processes; veths of other runtimes (foreign) are never judged.",
        height=9,
    )
    b.table(
        "Docker networks behind the bridges",
        [
            Query(
                keyed(
                    "docker_host_bridge_info",
                    "instance",
                    "bridge",
                    by=("instance", "bridge", "network", "driver", "subnet", "stp"),
                )
            ),
            Query(keyed("docker_host_bridge_ports", "instance", "bridge")),
            Query(keyed("docker_host_nat_masquerade_missing", "instance", "bridge")),
        ],
        [
            INSTANCE,
            label("bridge"),
            label("network", link=TO_NETWORK),
            label("driver"),
            label("subnet"),
            label("stp", "STP"),
            value("B", "ports", "none"),
            value("C", "MASQUERADE", "none", OK_MISSING),
        ],
        sort="MASQUERADE",
        join_on="row",
        width=12,
    )
    b.table(
        "Bridges and their ports (brctl show)",
        [Query("docker_host_bridge_port_state == 1")],
        [INSTANCE, label("bridge"), label("port", link=TO_VETH), label("state", "STP state")],
        sort="bridge",
        descending=False,
        width=12,
    )
    traffic = "sum by (instance, container) (rate(docker_host_veth_{}_total" + RATE + "))"
    b.timeseries(
        "Received by containers (host side transmits)",
        [Query(traffic.format("transmit_bytes"), "{{container}} on {{instance}}")],
        unit="Bps",
    )
    b.timeseries(
        "Sent by containers (host side receives)",
        [Query(traffic.format("receive_bytes"), "{{container}} on {{instance}}")],
        unit="Bps",
    )
    b.timeseries(
        "Packets per container",
        [
            Query(traffic.format("transmit_packets"), "in {{container}} on {{instance}}"),
            Query(traffic.format("receive_packets"), "out {{container}} on {{instance}}"),
        ],
        unit="pps",
    )
    b.timeseries(
        "Drops and errors per container",
        [
            Query(traffic.format("receive_drops"), "rx drops {{container}} on {{instance}}"),
            Query(traffic.format("transmit_drops"), "tx drops {{container}} on {{instance}}"),
            Query(traffic.format("receive_errors"), "rx errors {{container}} on {{instance}}"),
            Query(traffic.format("transmit_errors"), "tx errors {{container}} on {{instance}}"),
        ],
        unit="pps",
        lead="rx and tx as the host side counts them: rx is what the container sent.",
    )
    return b


def nat(s: Settings) -> Board:
    b = Board(
        "dhe-nat",
        "Docker host: NAT",
        "MASQUERADE and DNAT rules in both firewall backends, their counters, the rules "
        "Docker's networks and published ports need but lack, and the connection-tracking "
        "table every NATed connection takes an entry in.",
        variables=(NETWORK, CONTAINER),
    )
    b.table(
        "NAT per host",
        [
            Query("max by (instance, backend) (docker_host_nat_backend_info)"),
            Query("max by (instance) (docker_host_nat_rules_split_across_backends)"),
            Query(per_host("sum by (instance) (docker_host_nat_masquerade_missing)", "nat")),
            Query(per_host("sum by (instance) (docker_host_nat_dnat_missing)", "nat")),
            Query('sum by (instance) (docker_host_nat_rules{family="ipv4"})'),
            Query('sum by (instance) (docker_host_nat_rules{family="ipv6"})'),
            # On hosts whose nat collector runs (the table's rows): their ports are judged.
            Query(per_host("sum by (instance) (docker_host_published_port_broken)", "nat")),
        ],
        [
            INSTANCE,
            label("backend", "Docker's rules are in"),
            value("B", "split across backends", "none", SPLIT),
            value("C", "MASQUERADE missing", "none", steps=BAD_FROM_1),
            value("D", "DNAT missing", "none", steps=BAD_FROM_1),
            value("E", "nat rules (IPv4)", "none"),
            value("F", "nat rules (IPv6)", "none"),
            value("G", "published ports broken", "none", steps=BAD_FROM_1),
        ],
        sort="host",
        descending=False,
        join_on="instance",
        height=6,
        width=12,
    )
    b.table(
        "Backends readable",
        [Query("docker_host_nat_backend_readable")],
        [INSTANCE, label("backend"), value("A", "readable", "none", YES_GOOD)],
        sort="readable",
        descending=False,
        lead="An unreadable backend means no verdict on missing rules.",
        width=6,
        height=6,
    )
    b.table(
        "Missing rules judged",
        [Query("docker_host_nat_judged")],
        [INSTANCE, label("family"), value("A", "judged", "none", YES_GOOD)],
        sort="judged",
        descending=False,
        width=6,
        height=6,
    )
    published = ("instance", "container", "host_address", "host_port", "protocol")
    b.table(
        "Published ports: verdict per port",
        [
            Query(
                keyed(
                    "docker_host_published_port_ok", *published, by=(*published, "container_port")
                )
            ),
            Query(
                keyed(
                    'label_replace(docker_host_published_port_broken, "verdict", "broken", "", "")'
                    ' or label_replace(docker_host_published_port_unknown, "verdict", "unknown",'
                    ' "", "")'
                    ' or label_replace(docker_host_published_port_restricted, "verdict",'
                    ' "restricted", "", "")',
                    *published,
                    by=("hop", "verdict"),
                )
            ),
        ],
        [
            INSTANCE,
            label("container", link=TO_CONTAINER),
            label("host_address", "host address"),
            label("host_port", "host port"),
            label("protocol"),
            label("container_port", "container port"),
            value("A", "works", "none", YES_GOOD),
            label("verdict", "verdict"),
            label("hop", "first broken hop"),
        ],
        sort="works",
        descending=False,
        join_on="row",
        lead="One row per published port of a running container: whether every hop of its "
        "paths is whole (DNAT, FORWARD, IP forwarding, veth, bridge port, a listener in the "
        "container, docker-proxy, the per-port hairpin MASQUERADE: those its address and "
        "userland-proxy put on a path), and when not, the first broken one (or the first that "
        "could not be judged: unknown, never counted as broken; or restricted: whole, but a "
        "filter rule drops some sources' connections). "
        "`docker-host-exporter inspect` gives the reason.",
        height=8,
    )
    b.timeseries(
        "nat rules by backend",
        [
            Query(
                "sum by (instance, backend, family) (docker_host_nat_rules)",
                "{{backend}} {{family}} on {{instance}}",
            )
        ],
        unit="none",
        width=24,
        height=6,
    )
    masq = ("instance", "backend", "family", "table", "chain", "source", "out_interface", "negated")
    b.table(
        "MASQUERADE rules",
        [
            Query(keyed("docker_host_nat_masquerade_rules", *masq, by=masq)),
            Query(keyed(f"rate(docker_host_nat_masquerade_bytes_total{RATE})", *masq)),
            Query(keyed(f"rate(docker_host_nat_masquerade_packets_total{RATE})", *masq)),
        ],
        [
            INSTANCE,
            label("backend"),
            label("family"),
            label("table"),
            label("chain"),
            label("source"),
            label("out_interface", "out interface"),
            label("negated", "out negated"),
            value("A", "rules", "none", steps=thresholds((2, "orange"))),
            value("B", "traffic", "Bps"),
            value("C", "packets", "pps"),
        ],
        sort="traffic",
        join_on="row",
        lead="As in -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE; more than one "
        "rule with the same properties is a duplicate.",
    )
    dnat = (
        "instance",
        "backend",
        "family",
        "table",
        "chain",
        "protocol",
        "host_port",
        "destination",
    )
    b.table(
        "DNAT rules (published ports)",
        [
            Query(keyed("docker_host_nat_dnat_rules", *dnat, by=dnat)),
            Query(keyed(f"rate(docker_host_nat_dnat_bytes_total{RATE})", *dnat)),
            Query(keyed(f"rate(docker_host_nat_dnat_packets_total{RATE})", *dnat)),
        ],
        [
            INSTANCE,
            label("backend"),
            label("family"),
            label("chain"),
            label("protocol"),
            label("host_port", "host port"),
            label("destination"),
            value("A", "rules", "none", steps=thresholds((2, "orange"))),
            value("B", "traffic", "Bps"),
            value("C", "packets", "pps"),
        ],
        sort="traffic",
        join_on="row",
    )
    b.table(
        "Expected MASQUERADE rules",
        [Query("docker_host_nat_masquerade_missing")],
        [
            INSTANCE,
            label("network", link=TO_NETWORK),
            label("subnet"),
            label("bridge"),
            label("family"),
            value("A", "rule", "none", OK_MISSING),
        ],
        sort="rule",
        lead="One row per bridge network with masquerading on that is not internal.",
        width=12,
    )
    b.table(
        "Expected DNAT rules",
        [Query("docker_host_nat_dnat_missing")],
        [
            INSTANCE,
            label("container", link=TO_TOPOLOGY),
            label("protocol"),
            label("host_port", "host port"),
            label("container_port", "container port"),
            label("family"),
            value("A", "rule", "none", OK_MISSING),
        ],
        sort="rule",
        lead="One row per published port of a running container.",
        width=12,
    )
    b.timeseries(
        "Masqueraded traffic",
        [
            Query(
                f"sum by (instance, source) (rate(docker_host_nat_masquerade_bytes_total{RATE}))",
                "{{source}} on {{instance}}",
            )
        ],
        unit="Bps",
    )
    b.timeseries(
        "DNAT traffic",
        [
            Query(
                "sum by (instance, host_port, destination) "
                f"(rate(docker_host_nat_dnat_bytes_total{RATE}))",
                "{{host_port}} → {{destination}} on {{instance}}",
            )
        ],
        unit="Bps",
    )
    firewall(b)
    conntrack(b)
    return b


ON_OFF = Mapping(((0, "off", "red"), (1, "on", "green")))


def firewall(b: Board) -> None:
    """Docker's filter rules (issue 15): the forward path, expected vs actual."""
    b.table(
        "Forwarding per host",
        [
            Query('max by (instance) (docker_host_ip_forward{family="ipv4"})'),
            Query('max by (instance) (docker_host_ip_forward{family="ipv6"})'),
            Query("max by (instance) (docker_host_br_netfilter_loaded)"),
            Query("max by (instance) (docker_host_docker_firewall_managed)"),
            Query(per_host("sum by (instance) (docker_host_filter_rule_missing)", "firewall")),
            Query(per_host("sum by (instance) (docker_host_firewall_rules_undecoded)", "firewall")),
        ],
        [
            INSTANCE,
            value("A", "ip_forward", "none", ON_OFF),
            value("B", "IPv6 forwarding", "none", ON_OFF),
            value("C", "br_netfilter", "none", YES_GOOD),
            value("D", "Docker manages the firewall", "none", YES_GOOD),
            value("E", "filter rules missing", "none", steps=BAD_FROM_1),
            value("F", "rules not understood", "none", steps=thresholds((1, "orange"))),
        ],
        sort="host",
        descending=False,
        join_on="instance",
        lead="Docker's filter rules: FORWARD's jumps, each bridge's accepts, each published "
        "port's ACCEPT.",
        height=6,
    )
    b.table(
        "Expected filter rules",
        [Query("docker_host_filter_rule_missing")],
        [
            INSTANCE,
            label("family"),
            label("network", link=TO_NETWORK),
            label("container", link=TO_TOPOLOGY),
            label("rule"),
            value("A", "rule", "none", OK_MISSING),
        ],
        sort="rule",
        lead="One row per rule Docker's networks (container empty) and published ports need; "
        "network empty: a jump every network needs.",
        width=12,
        height=10,
    )
    b.table(
        "FORWARD policies",
        [Query("docker_host_filter_forward_policy")],
        [
            INSTANCE,
            label("backend"),
            label("family"),
            label("table"),
            label("chain"),
            label("policy"),
        ],
        sort="host",
        descending=False,
        width=12,
        height=5,
    )
    b.table(
        "Filter judged, DOCKER-USER, bridge netfilter",
        [
            Query("docker_host_filter_judged"),
            Query("docker_host_filter_docker_user_rules"),
            Query("docker_host_bridge_nf_call"),
        ],
        [
            INSTANCE,
            label("family"),
            value("A", "judged", "none", YES_GOOD),
            value("B", "DOCKER-USER rules", "none"),
            value("C", "bridge-nf-call", "none", ON_OFF),
        ],
        sort="host",
        descending=False,
        join_on="family",
        width=12,
        height=5,
    )
    b.timeseries(
        "Filter rules on the forward path",
        [
            Query(
                "sum by (instance, backend, family, table) (docker_host_filter_rules)",
                "{{backend}} {{family}} {{table}} on {{instance}}",
            ),
            Query(
                "sum by (instance, backend, family, table) (docker_host_firewall_rules_undecoded)",
                "not understood: {{backend}} {{family}} {{table}} on {{instance}}",
            ),
        ],
        unit="none",
        width=24,
        height=6,
    )


def conntrack(b: Board) -> None:
    """Every NATed connection is tracked: the conntrack table, and who fills it."""
    b.row("Connection tracking")
    host_stat(
        b,
        "Conntrack table used",
        "max by (instance) (docker_host_conntrack_entries / docker_host_conntrack_entries_limit)",
        unit="percentunit",
        lead="Entries against nf_conntrack_max; when full, new connections of every container "
        "are dropped.",
        steps=thresholds((0.8, "orange"), (0.95, "red")),
    )
    host_stat(
        b,
        "Conntrack available",
        "max by (instance) (docker_host_conntrack_available)",
        mapping=YES_GOOD,
        steps=GOOD_FROM_1,
    )
    host_stat(
        b,
        "Table dump",
        "max by (instance) (docker_host_conntrack_dump_success)",
        mapping=SUCCESS,
        steps=GOOD_FROM_1,
    )
    host_stat(
        b,
        "Entries attributed to containers",
        "max by (instance) (docker_host_conntrack_attributed)",
        mapping=YES_GOOD,
        steps=GOOD_FROM_1,
    )
    host_stat(
        b,
        "Entries not attributed (dump cap)",
        "max by (instance) (docker_host_conntrack_dump_skipped_entries)",
    )
    host_stat(
        b,
        "Hash buckets",
        "max by (instance) (docker_host_conntrack_buckets)",
        steps=thresholds(base="blue"),
    )
    b.timeseries(
        "Tracked connections and the limit",
        [
            Query("sum by (instance) (docker_host_conntrack_entries)", "entries {{instance}}"),
            Query("max by (instance) (docker_host_conntrack_entries_limit)", "limit {{instance}}"),
        ],
        unit="none",
    )
    b.timeseries(
        "Tracked connections per container (top 10)",
        [
            Query(
                "topk(10, sum by (instance, container) (docker_host_container_conntrack_entries))",
                "{{container}} on {{instance}}",
            )
        ],
        unit="none",
    )
    b.timeseries(
        "Conntrack drops, insert failures, early drops",
        [
            Query(
                f"sum by (instance) (rate(docker_host_conntrack_stat_{name}_total{RATE}))",
                f"{legend} {{{{instance}}}}",
            )
            for name, legend in (
                ("drop", "drop"),
                ("insert_failed", "insert failed"),
                ("early_drop", "early drop"),
                ("search_restart", "search restart"),
                ("invalid", "invalid"),
            )
        ],
        unit="cps",
    )
    b.timeseries(
        "Entries read by the dump, and not attributed",
        [
            Query(
                "sum by (instance, family) (docker_host_conntrack_dump_entries)",
                "read {{family}} {{instance}}",
            ),
            Query(
                "sum by (instance, owner) (docker_host_conntrack_unattributed_entries)",
                "no container: {{owner}} {{instance}}",
            ),
        ],
        unit="none",
    )
    b.table(
        "TCP connections per container by state",
        [Query("docker_host_container_conntrack_tcp_entries")],
        [
            INSTANCE,
            label("container", link=TO_TOPOLOGY),
            label("state"),
            value("A", "connections", "none"),
        ],
        sort="connections",
        width=12,
    )
    b.table(
        "Tracked connections per container by protocol",
        [Query("docker_host_container_conntrack_entries")],
        [
            INSTANCE,
            label("container", link=TO_TOPOLOGY),
            label("protocol"),
            value("A", "connections", "none"),
        ],
        sort="connections",
        width=12,
    )


def layers(s: Settings) -> Board:
    b = Board(
        "dhe-layers",
        "Docker host: image layers",
        "What each image shares and what it alone costs, what sharing saves, and what "
        "containers write into their read/write layers.",
        variables=(IMAGE, CONTAINER),
    )
    for title, family in (
        ("Layers on disk", "docker_host_layers_bytes"),
        ("Without sharing", "docker_host_images_bytes_without_sharing"),
        ("Saved by sharing", "docker_host_sharing_saved_bytes"),
    ):
        host_stat(
            b,
            title,
            f"max by (instance) ({family})",
            unit="bytes",
            steps=thresholds(base="blue"),
            width=6,
        )
    host_stat(
        b,
        "Layers",
        "max by (instance) (docker_host_layers)",
        steps=thresholds(base="blue"),
        width=6,
    )
    image = ("instance", "image_id")
    b.table(
        "Images",
        [
            Query(
                keyed(
                    "docker_host_image_info",
                    *image,
                    by=("instance", "image_id", "tags", "dangling"),
                )
            ),
            Query(keyed("docker_host_image_size_bytes", *image)),
            Query(keyed("docker_host_image_unique_bytes", *image)),
            Query(keyed("docker_host_image_shared_bytes", *image)),
            Query(keyed("docker_host_image_layers", *image)),
            Query(keyed("docker_host_image_containers", *image)),
        ],
        [
            INSTANCE,
            label("tags"),
            label("image_id", "image id", TO_IMAGE),
            label("dangling"),
            value("B", "size", "bytes"),
            value("C", "unique (freed by removing it)", "bytes"),
            value("D", "shared", "bytes"),
            value("E", "layers", "none"),
            value("F", "containers", "none"),
        ],
        sort="unique (freed by removing it)",
        join_on="row",
        height=9,
    )
    layer = ("instance", "layer")
    b.table(
        "Most shared layers (top K by bytes saved)",
        [
            Query(keyed("docker_host_layer_sharing_saved_bytes", *layer, by=layer)),
            Query(keyed("docker_host_layer_size_bytes", *layer)),
            Query(keyed("docker_host_layer_images", *layer)),
            Query(keyed("docker_host_layer_containers", *layer)),
        ],
        [
            INSTANCE,
            label("layer", "layer (chain id)"),
            value("A", "saved by sharing", "bytes"),
            value("B", "size", "bytes"),
            value("C", "images", "none"),
            value("D", "containers", "none"),
        ],
        sort="saved by sharing",
        join_on="row",
        height=9,
    )
    tagged = "on (instance, image_id) group_left (tags) docker_host_image_info"
    b.timeseries(
        "Unique bytes per image (what removing it frees)",
        [Query(f"topk(10, docker_host_image_unique_bytes * {tagged})", "{{tags}} on {{instance}}")],
        unit="bytes",
    )
    b.timeseries(
        "Shared bytes per image",
        [Query(f"topk(10, docker_host_image_shared_bytes * {tagged})", "{{tags}} on {{instance}}")],
        unit="bytes",
    )
    box = ("instance", "container")
    b.table(
        "What containers wrote",
        [
            Query(keyed("docker_host_container_rw_layer_bytes", *box, by=box)),
            Query(keyed("docker_host_container_virtual_size_bytes", *box)),
            Query(
                keyed(
                    "(docker_host_container_info and on (instance, container) "
                    "docker_host_container_rw_layer_bytes)",
                    *box,
                    by=("image", "image_id"),
                )
            ),
        ],
        [
            INSTANCE,
            label("container", link=TO_TOPOLOGY),
            label("image"),
            label("image_id", "image id", TO_IMAGE),
            value("A", "read/write layer", "bytes"),
            value("B", "whole filesystem", "bytes"),
        ],
        sort="read/write layer",
        join_on="row",
        width=12,
        height=9,
    )
    b.timeseries(
        "Largest read/write layers",
        [Query("topk(10, docker_host_container_rw_layer_bytes)", "{{container}} on {{instance}}")],
        unit="bytes",
        height=9,
    )
    return b


def daemon(s: Settings) -> Board:
    b = Board(
        "dhe-daemon",
        "Docker host: daemon configuration",
        "daemon.json against the running dockerd: drift, what a SIGHUP applies, conflicts "
        "that break the next restart; when dockerd started, reloaded and the file changed.",
    )
    host_stat(
        b,
        "Config file valid",
        "min by (instance) (docker_host_daemon_config_file_valid)",
        mapping=VALID,
        steps=GOOD_FROM_1,
    )
    host_stat(
        b,
        "Config file present",
        "min by (instance) (docker_host_daemon_config_file_present)",
        mapping=YES_GOOD,
        steps=thresholds(base="blue"),
    )
    host_stat(
        b,
        "Changed since dockerd read it",
        "max by (instance) (docker_host_daemon_config_changed_since_load)",
        mapping=YES_BAD,
        steps=thresholds((1, "orange")),
    )
    host_stat(
        b,
        "Keys needing a reload",
        per_host(
            'sum by (instance) (docker_host_daemon_config_drift{applies_on="reload"})', "daemon"
        ),
        steps=thresholds((1, "orange")),
    )
    host_stat(
        b,
        "Keys needing a restart",
        per_host(
            'sum by (instance) (docker_host_daemon_config_drift{applies_on="restart"})', "daemon"
        ),
        steps=thresholds((1, "orange")),
    )
    host_stat(
        b,
        "Flag/file conflicts",
        per_host("sum by (instance) (docker_host_daemon_config_flag_conflict)", "daemon"),
    )
    host_stat(
        b,
        "Unknown keys",
        per_host("count by (instance) (docker_host_daemon_config_unknown_key)", "daemon"),
    )
    host_stat(
        b,
        "dockerd processes",
        'sum by (instance) (docker_host_daemon_processes{process="dockerd"})',
        mapping=DOWN_WHEN_0,
        steps=GOOD_FROM_1,
    )
    host_stat(
        b,
        "containerd processes",
        'sum by (instance) (docker_host_daemon_processes{process="containerd"})',
        mapping=DOWN_WHEN_0,
        steps=GOOD_FROM_1,
    )
    key = ("instance", "key")
    b.table(
        "Keys in daemon.json",
        [
            Query(keyed("docker_host_daemon_config_flag_conflict", *key, by=key)),
            Query(keyed("docker_host_daemon_config_drift", *key, by=("applies_on",))),
        ],
        [
            INSTANCE,
            label("key"),
            value("B", "file vs daemon", "none", DRIFT),
            label("applies_on", "applied by"),
            value("A", "also a flag", "none", YES_BAD),
        ],
        sort="file vs daemon",
        join_on="row",
        lead="A drifted key waits for a SIGHUP (applied by reload) or a restart; a key also "
        "given as a flag makes the next start fail.",
        width=12,
        height=9,
    )
    b.table(
        "Command-line flags (a SIGHUP never changes them)",
        [Query("docker_host_daemon_command_line_flag")],
        [INSTANCE, label("key"), value("A", "set", "none")],
        sort="key",
        descending=False,
        width=12,
        height=9,
    )
    b.table(
        "Running daemon",
        [Query("docker_host_daemon_info")],
        [
            INSTANCE,
            label("version"),
            label("storage_driver", "storage driver"),
            label("logging_driver", "logging driver"),
            label("cgroup_driver", "cgroup driver"),
            label("default_runtime", "default runtime"),
        ],
        sort="host",
        descending=False,
        width=12,
        height=6,
    )
    b.table(
        "Engine components",
        [Query("docker_host_engine_component_info")],
        [INSTANCE, label("component"), label("version")],
        sort="component",
        descending=False,
        width=6,
        height=6,
    )
    b.table(
        "Configuration file",
        [Query("docker_host_daemon_config_file_info")],
        [INSTANCE, label("path"), label("explicit", "given by --config-file")],
        sort="host",
        descending=False,
        width=6,
        height=6,
    )
    b.timeseries(
        "File modified, last reload, daemon start",
        [
            Query(
                "max by (instance) (docker_host_daemon_config_file_modified_timestamp_seconds)"
                " * 1000",
                "file modified {{instance}}",
            ),
            Query(
                "max by (instance) (docker_host_daemon_last_reload_timestamp_seconds) * 1000",
                "last reload {{instance}}",
            ),
            Query(
                "max by (instance, process) (docker_host_daemon_process_start_time_seconds) * 1000",
                "{{process}} started {{instance}}",
            ),
        ],
        unit="dateTimeAsIso",
        lead="The same moments are annotations on every graph.",
        width=24,
    )
    return b


def topology(s: Settings) -> Board:
    b = Board(
        "dhe-topology",
        "Docker host: topology",
        "The plumbing as a whole, one row per host and container interface: which container's "
        "eth0 is which veth on which bridge, in which network and subnet, masqueraded or not, "
        "with which published ports, how much traffic, and the orphans.",
        variables=(CONTAINER, NETWORK),
        container_annotations=True,
    )
    # One row per container interface (its host veth), per orphaned veth, and per running
    # container without a veth of its own (--network host, none, container:X).
    rows = (
        "(docker_host_veth_info or docker_host_veth_orphaned or "
        '(docker_host_container_info{state="running"} unless on (instance, container) '
        "docker_host_veth_info))"
    )
    key = ("instance", "container", "interface")

    def joined(on: str, right: str, labels: str = "") -> str:
        return f"({rows} * on ({on}) group_left ({labels}) {right})"

    published = "max by (instance, container, protocol, host_port) (docker_host_nat_dnat_missing)"
    b.table(
        "Containers and their plumbing",
        [
            Query(
                keyed(
                    rows,
                    *key,
                    by=(
                        "instance",
                        "container",
                        "container_interface",
                        "interface",
                        "bridge",
                        "network",
                        "reason",
                    ),
                )
            ),
            Query(
                keyed(
                    joined("instance, container", "docker_host_container_info", "network_mode"),
                    *key,
                    by=("network_mode",),
                )
            ),
            Query(
                keyed(
                    joined("instance, bridge", "docker_host_bridge_info", "subnet"),
                    *key,
                    by=("subnet",),
                )
            ),
            Query(
                keyed(
                    joined(
                        "instance, bridge",
                        "max by (instance, bridge) (docker_host_nat_masquerade_missing)",
                    ),
                    *key,
                )
            ),
            Query(
                keyed(
                    joined("instance, container", f"count by (instance, container) ({published})"),
                    *key,
                )
            ),
            Query(
                keyed(
                    joined("instance, container", f"sum by (instance, container) ({published})"),
                    *key,
                )
            ),
            Query(
                keyed(
                    joined(
                        "instance, interface",
                        "sum by (instance, interface) "
                        f"(rate(docker_host_veth_transmit_bytes_total{RATE}))",
                    ),
                    *key,
                )
            ),
            Query(
                keyed(
                    joined(
                        "instance, interface",
                        "sum by (instance, interface) "
                        f"(rate(docker_host_veth_receive_bytes_total{RATE}))",
                    ),
                    *key,
                )
            ),
            Query(
                keyed(
                    joined(
                        "instance, interface",
                        "(0 * max by (instance, interface) (docker_host_veth_info) or "
                        "max by (instance, interface) (docker_host_veth_orphaned))",
                    ),
                    *key,
                )
            ),
        ],
        # Widths so that all fifteen columns fit a 1600-pixel window (Grafana's default column
        # width would push the rates and the orphan flag off to the right).
        [
            label("instance", "host", TO_HOST, width=120),
            label("container", link=TO_CONTAINER, width=150),
            label("container_interface", "interface", width=70),
            label("interface", "host veth", TO_VETH, width=115),
            label("bridge", width=110),
            label("network", link=TO_NETWORK, width=100),
            label("network_mode", "network mode", width=100),
            label("subnet", width=115),
            value("D", "MASQUERADE", "none", OK_MISSING, width=100),
            value("E", "published ports", "none", NO_PORTS, width=80),
            value("F", "DNAT", "none", MISSING_COUNT, width=70),
            value("G", "receives", "Bps", width=85),
            value("H", "sends", "Bps", width=85),
            value("I", "veth", "none", ORPHAN, width=80),
            label("reason", "why orphaned"),
        ],
        sort="veth",
        join_on="row",
        lead="Joined by Grafana (joinByField on a row key made with label_join) from instant "
        "queries: nothing but Prometheus. An empty MASQUERADE cell: not judged (internal "
        "network, no bridge, or the nat collector not running). Filter any column from its "
        "header; click a container, veth or network to see what explains it.",
        height=12,
    )
    port = ("instance", "container", "protocol", "host_port", "family")
    b.table(
        "Published ports",
        [
            Query(
                keyed(
                    "docker_host_nat_dnat_missing",
                    *port,
                    by=(
                        "instance",
                        "container",
                        "protocol",
                        "host_port",
                        "container_port",
                        "family",
                    ),
                )
            ),
            Query(
                keyed(
                    "(0 * docker_host_nat_dnat_missing + on (instance, protocol, host_port, family)"
                    " group_left () sum by (instance, protocol, host_port, family) "
                    f"(rate(docker_host_nat_dnat_bytes_total{RATE})))",
                    *port,
                )
            ),
            Query(
                keyed(
                    "(0 * docker_host_nat_dnat_missing + on (instance, container, protocol, "
                    "host_port, family) group_left () min by (instance, container, protocol, "
                    f"host_port, family) ({by_family('docker_host_published_port_ok')}))",
                    *port,
                )
            ),
            Query(
                keyed(
                    "(0 * docker_host_nat_dnat_missing + on (instance, container, protocol, "
                    "host_port, family) group_left (hop) max by (instance, container, protocol, "
                    f"host_port, family, hop) ({by_family('docker_host_published_port_broken')}))",
                    *port,
                    by=("hop",),
                )
            ),
        ],
        [
            INSTANCE,
            label("container", link=TO_CONTAINER),
            label("protocol"),
            label("host_port", "host port"),
            label("container_port", "container port"),
            label("family"),
            value("A", "DNAT rule", "none", OK_MISSING),
            value("B", "through the rule", "Bps"),
            value("C", "port works", "none", YES_GOOD),
            label("hop", "first broken hop"),
        ],
        sort="DNAT rule",
        join_on="row",
        lead="One row per published port of a running container, joined on "
        "instance/container/protocol/host_port/family: a per-port verdict joins here.",
        height=8,
    )
    return b


BOARDS: dict[str, Callable[[Settings], Board]] = {
    "overview": overview,
    "topology": topology,
    "network": network,
    "nat": nat,
    "layers": layers,
    "daemon": daemon,
}


def render(settings: Settings) -> Iterator[tuple[str, str]]:
    """Each dashboard's file name and JSON text."""
    for name, build in BOARDS.items():
        text = json.dumps(build(settings).json(settings), indent=2, ensure_ascii=False) + "\n"
        yield f"{name}.json", text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    mixin_settings.add_arguments(parser)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write")
    parser.add_argument("--list-settings", action="store_true", help="print the settings")
    args = parser.parse_args(argv)
    if args.list_settings:
        print(mixin_settings.describe(Settings))
        return 0
    try:
        settings = load_settings(args.settings, args.overrides)
    except SettingsError as exc:
        print(f"grafana.generate: {exc}", file=sys.stderr)
        return 2
    stale = []
    for name, text in render(settings):
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check:
        known = {name for name, _ in render(settings)}
        stale += sorted(p.name for p in args.out.glob("*.json") if p.name not in known)
    if stale:
        print(f"stale: {', '.join(stale)}: run python -m grafana.generate", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
