"""End to end with a real Prometheus (Debian's) scraping two exporters on loopback with the
alert rules loaded: one on the host's engine, one on a dockerd the test controls. On a host set
up with containers, orphaned veths, a missing MASQUERADE rule and a drifted daemon.json, every
dashboard query returns data through Prometheus's HTTP API, the matching alerts are pending or
firing, and every dashboard drawn by Grafana's panel components shows data in every panel. The
dashboards' tests share one such scene (the module's `scene`); the alerts' own tests have theirs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from grafana.render import PicturesError, bundle_path, render_all
from mixin.alerts import AlertSettings, known_alerts, render_rules
from tests import exporter_image
from tests.conftest import BASE_IMAGE, Containers, unavailable
from tests.helpers import exporter_process, free_port, get, wait_for
from tests.host_objects import orphan_veths
from tests.integration.test_faults import in_private_mounts
from tests.own_dockerd import OwnDockerd, own_dockerd

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JOB = "docker-host-exporter"
WEB_PORT = 18383  # where set_up_host publishes its web container


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        body = json.loads(get(f"{self.base}/api/v1/{path}{query}", timeout=10))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[Any]:
        result: list[Any] = self.api("query", query=expr)["result"]
        return result


@contextlib.contextmanager
def serve_prometheus(config: dict[str, Any], workdir: Path) -> Iterator[Prometheus]:
    """Debian's Prometheus on a loopback port with this configuration, its data in workdir."""
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is part of the test bed"
    port = free_port()
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        server = Prometheus(f"http://127.0.0.1:{port}")
        wait_for(lambda: _ready(server.base), timeout=60, interval=0.5)
        yield server
    finally:
        process.terminate()
        process.wait(30)


@contextlib.contextmanager
def prometheus(
    targets: list[str],
    rules: Path | None = None,
    scrape_configs: list[dict[str, Any]] | None = None,
) -> Iterator[Prometheus]:
    workdir = Path(tempfile.mkdtemp(prefix="dhe-prom-"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules or ROOT / "deploy" / "prometheus" / "alerts.yml")],
        "scrape_configs": scrape_configs
        or [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
    }
    try:
        with serve_prometheus(config, workdir) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _ready(base: str) -> bool:
    try:
        get(f"{base}/-/ready", timeout=2)
        return True
    except OSError:
        return False


def substitute(expr: str) -> str:
    """What Grafana sends with every variable at All (allValue .*)."""
    return re.sub(r"\$(\w+)", ".*", expr.replace("$__rate_interval", "15s"))


def dashboards() -> list[dict[str, Any]]:
    return [
        json.loads(path.read_text())
        for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    ]


def panels_without_data(prom: Prometheus) -> list[str]:
    """Every query of every panel (each query of a joined table on its own) must return
    something, and the rows a joined table's later queries return must be rows of its first
    (else Grafana's join would add rows holding nothing but that one column). Every label
    column a table shows is a label some query returns (else it stays empty for ever)."""
    problems = []
    for dashboard in dashboards():
        for panel in dashboard["panels"]:
            joined = [t for t in panel.get("transformations", []) if t["id"] == "joinByField"]
            base: set[str] = set()
            returned: set[str] = set()
            for target in panel.get("targets", []):
                where = f"{dashboard['uid']} / {panel['title']} / {target['refId']}"
                try:
                    result = prom.query(substitute(target["expr"]))
                except urllib.error.HTTPError as error:
                    problems.append(f"{where}: {error.read().decode()}: {target['expr']}")
                    continue
                if not result:
                    problems.append(f"{where}: no data: {target['expr']}")
                    continue
                returned |= {name for r in result for name in r["metric"]}
                if not joined:
                    continue
                on = joined[0]["options"]["byField"]
                keys = {r["metric"].get(on, "") for r in result}
                if target["refId"] == "A":
                    base = keys
                elif not keys <= base:
                    problems.append(f"{where}: rows not in query A: {sorted(keys - base)[:3]}")
            for step in panel.get("transformations", []):
                if step["id"] == "filterFieldsByName":
                    shown = step["options"]["include"]["names"]
                    never = [n for n in shown if not n.startswith("Value") and n not in returned]
                    if never:
                        problems.append(f"{dashboard['uid']} / {panel['title']}: no {never}")
    return problems


def annotations_without_data(prom: Prometheus, start: float, end: float) -> list[str]:
    problems = []
    for dashboard in dashboards():
        for note in dashboard["annotations"]["list"]:
            if "expr" not in note:
                continue
            result = prom.api(
                "query_range",
                query=substitute(note["expr"]),
                start=f"{start:.0f}",
                end=f"{end:.0f}",
                step="1",
            )["result"]
            if not result:
                problems.append(f"{dashboard['uid']} / {note['name']}: no data: {note['expr']}")
    return problems


def assert_every_panel_and_annotation_has_data(
    prom: Prometheus, containers: Containers, since: float
) -> None:
    """Every panel's queries have data and join; every annotation has events, a container
    stop included (one is stopped here, once Prometheus has seen it run)."""
    stopped = containers.run("stopped")
    name = stopped.name
    wait_for(
        lambda: bool(
            prom.query(f'docker_host_container_pid1_start_time_seconds{{container="{name}"}}')
        ),
        timeout=60,
    )
    stopped.stop(timeout=0)
    problems = panels_without_data(prom)
    assert problems == [], "dashboard panels without data:\n" + "\n".join(problems)
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not annotations_without_data(prom, since, time.time()), timeout=60)
    problems = annotations_without_data(prom, since, time.time())
    assert problems == [], "annotations without events:\n" + "\n".join(problems)


def joined_table(prom: Prometheus, uid: str, title: str) -> list[dict[str, str]]:
    """A table panel as Grafana shows it: its instant queries joined on the join label (every
    row of query A, with the one matching row of each other query), columns by display name."""
    dashboard = next(d for d in dashboards() if d["uid"] == uid)
    panel = next(p for p in dashboard["panels"] if p["title"] == title)
    on = next(t["options"]["byField"] for t in panel["transformations"] if t["id"] == "joinByField")
    shown = {
        o["matcher"]["options"]: next(
            p["value"] for p in o["properties"] if p["id"] == "displayName"
        )
        for o in panel["fieldConfig"]["overrides"]
    }
    by_ref = {t["refId"]: prom.query(substitute(t["expr"])) for t in panel["targets"]}
    others: dict[str, dict[str, dict[str, str]]] = {}
    for ref, result in by_ref.items():
        rows = {r["metric"][on]: {**r["metric"], f"Value #{ref}": r["value"][1]} for r in result}
        assert len(rows) == len(result), f"{title}: query {ref} repeats a {on}"
        others[ref] = rows
    table = []
    for key in others["A"]:
        merged: dict[str, str] = {}
        for rows in others.values():
            merged.update(rows.get(key, {}))
        table.append({title: merged.get(name, "") for name, title in shown.items()})
    return table


def assert_the_hosts_table_tells_hosts_apart(prom: Prometheus, host: str, own: str) -> None:
    """The overview's Hosts table has one row per exporter, each with its own troubles: the
    host's orphaned veths and namespace sharer, the own dockerd's drifted daemon.json; the own
    exporter runs no network collector, so it has no orphan count at all rather than a 0."""
    rows = {r["host"]: r for r in joined_table(prom, "dhe-overview", "Hosts")}
    assert set(rows) == {host, own}
    assert int(rows[host]["orphaned veths"]) >= 2
    assert int(rows[host]["sharing host namespaces"]) >= 1
    assert rows[own]["orphaned veths"] == ""
    assert int(rows[own]["drifted keys"]) >= 1
    assert rows[own]["daemon.json"] == "1"
    assert rows[host]["exporter"] == rows[own]["exporter"] != ""


def assert_topology_shows_the_plumbing(
    prom: Prometheus, containers: Containers, engine: Any
) -> None:
    """Topology's rows against the engine and the kernel: the web container's host veth is the
    interface its eth0's iflink names, on docker0 in the bridge network's subnet, masqueraded,
    with its one published port DNATed; a container on the network whose MASQUERADE rule was
    deleted reads missing; the orphaned veths are rows of their own."""
    network = engine.networks.get(f"{containers.prefix}-e2e")
    name = f"{containers.prefix}-unmasq"
    try:
        containers.run("unmasq", network=network.name)
        check_topology(prom, engine, network, name, f"{containers.prefix}-web")
    finally:
        # Off the network before the scene removes it (also when it was made but not started).
        with contextlib.suppress(docker.errors.APIError):  # gone, or going
            engine.containers.get(name).remove(force=True)


def check_topology(
    prom: Prometheus, engine: Any, network: Any, unmasqueraded: str, web_name: str
) -> None:
    web = engine.containers.get(web_name)
    iflink = Path(f"/proc/{web.attrs['State']['Pid']}/root/sys/class/net/eth0/iflink")
    host_veth = socket.if_indextoname(int(iflink.read_text()))
    bridge_subnet = engine.networks.get("bridge").attrs["IPAM"]["Config"][0]["Subnet"]

    def rows() -> dict[str, dict[str, str]]:
        table = joined_table(prom, "dhe-topology", "Containers and their plumbing")
        return {r["container"] or r["host veth"]: r for r in table}

    # Its veth is paired a sample after the container is listed: wait for the whole row.
    wait_for(lambda: rows().get(unmasqueraded, {}).get("host veth"), timeout=60)
    table = rows()
    assert table[web.name]["network mode"] in ("default", "bridge")
    assert table[web.name] | {"receives": "", "sends": "", "network mode": ""} == {
        "host": table[web.name]["host"],
        "container": web.name,
        "interface": "eth0",
        "host veth": host_veth,
        "bridge": "docker0",
        "network": "bridge",
        "network mode": "",
        "subnet": bridge_subnet,
        "MASQUERADE": "0",
        "published ports": "1",
        "DNAT": "0",
        "receives": "",
        "sends": "",
        "veth": "0",
        "why orphaned": "",
    }
    masq = table[unmasqueraded]
    assert masq["network"] == network.name
    assert masq["bridge"] == f"br-{network.id[:12]}"
    assert masq["subnet"] == network.attrs["IPAM"]["Config"][0]["Subnet"]
    assert masq["MASQUERADE"] == "1"
    assert masq["published ports"] == ""
    orphans = [r for r in table.values() if r["veth"] == "1"]
    assert len(orphans) >= 2, orphans
    assert all(r["container"] == "" and r["bridge"] == "docker0" for r in orphans), orphans
    assert all(r["why orphaned"] for r in orphans)
    ports = joined_table(prom, "dhe-topology", "Published ports")
    [port] = [p for p in ports if p["container"] == web.name]
    assert (port["host port"], port["container port"], port["DNAT rule"]) == (
        str(WEB_PORT),
        "80",
        "0",
    )


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return bool(conn.recv(64))
    except OSError:
        return False


@contextlib.contextmanager
def set_up_host(containers: Containers, engine: Any) -> Iterator[OwnDockerd]:
    """The troubles the dashboards and alerts show, on the host and on a dockerd of our own."""
    containers.run("web", "httpd -f -p 80", ports={"80/tcp": WEB_PORT})
    # One request to its published port, from loopback: a connection the host's conntrack
    # table holds for the web container (in TIME_WAIT for two minutes), for the conntrack panels.
    wait_for(lambda: _answers("127.0.0.1", WEB_PORT), timeout=30, interval=0.2)
    containers.run("hostpid", pid_mode="host")
    # A published port nothing listens on: the port-verdict panels' broken hop, and its alert.
    containers.run("deaf", ports={"80/tcp": 18384})
    network = engine.networks.create(f"{containers.prefix}-e2e", labels={"dhe-test": "1"})
    try:  # removed also when the orphans or the own dockerd cannot be set up
        network.reload()
        subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
        bridge = f"br-{network.id[:12]}"
        rule = ["POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"]
        with orphan_veths(), own_dockerd() as dockerd:
            subprocess.run(["iptables", "-t", "nat", "-D", *rule], check=True, timeout=30)
            try:
                dockerd.write(
                    {"insecure-registries": ["a.example:5000"], "log-driver": "json-file"}
                )
                dockerd.reload()
                # The seed's edit, not yet applied: drift that a SIGHUP would fix.
                dockerd.write(
                    {
                        "insecure-registries": ["a.example:5000", "b.example:5000"],
                        "log-driver": "json-file",
                    }
                )
                yield dockerd
            finally:
                subprocess.run(["iptables", "-t", "nat", "-A", *rule], check=True, timeout=30)
    finally:
        network.remove()


@dataclass
class Scene:
    """The host set up (set_up_host), an exporter on it and one on the own dockerd, and a
    Prometheus with the shipped rules scraping both since `since`."""

    containers: Containers  # the scene's own: its prefix names the web container and network
    dockerd: OwnDockerd
    host_exporter: str  # host:port, the instance label
    own_exporter: str
    prom: Prometheus
    since: float


@pytest.fixture(scope="module")
def scene(engine: Any) -> Iterator[Scene]:
    """One scene for the dashboards' tests of this module, scraped from its start to the
    module's end: the pictures' test, last, then finds data from before Grafana's last step
    boundary (test_every_panel_of_every_dashboard_draws_data) without waiting for one."""
    made = Containers(engine)
    others = [
        f"--no-collector.{c}"
        for c in ("containers", "processes", "network", "nat", "firewall", "layers")
    ]
    try:
        with (
            set_up_host(made, engine) as dockerd,
            # conntrack's own interval is a minute: the samples', here, for the pictures'
            # connections (seen in a second or two; the host's table is small).
            exporter_process("--sample.interval=1s", "--collector.conntrack.interval=1s") as (
                host_exporter,
                _,
            ),
            exporter_process("--sample.interval=1s", f"--docker.host={dockerd.host}", *others) as (
                own_exporter,
                _,
            ),
            prometheus(
                [host_exporter.removeprefix("http://"), own_exporter.removeprefix("http://")]
            ) as prom,
        ):
            since = time.time()
            wait_for(lambda: len(prom.query(f'up{{job="{JOB}"}} == 1')) == 2, timeout=60)
            # Long enough for every rate() window to hold several samples.
            wait_for(
                lambda: bool(prom.query("rate(docker_host_veth_receive_bytes_total[15s])")),
                timeout=60,
            )
            wait_for(
                lambda: bool(prom.query("docker_host_nat_masquerade_missing == 1")), timeout=60
            )
            yield Scene(
                made,
                dockerd,
                host_exporter.removeprefix("http://"),
                own_exporter.removeprefix("http://"),
                prom,
                since,
            )
    finally:
        made.cleanup()


def test_dashboards_have_data_and_alerts_fire(
    scene: Scene, containers: Containers, engine: Any
) -> None:
    prom = scene.prom
    started = time.time()
    assert_topology_shows_the_plumbing(prom, scene.containers, engine)
    assert_the_hosts_table_tells_hosts_apart(prom, scene.host_exporter, scene.own_exporter)
    assert_every_panel_and_annotation_has_data(prom, containers, started)

    wanted = {
        "DockerHostVethOrphaned",
        "DockerHostMasqueradeRuleMissing",
        "DockerHostDaemonConfigReloadNeeded",
        "DockerHostContainerSharesHostNamespace",
        "DockerHostPublishedPortNotListening",
    }

    def active() -> set[str]:
        return {
            a["labels"]["alertname"]
            for a in prom.api("alerts")["alerts"]
            if a["state"] in ("pending", "firing")
        }

    wait_for(lambda: wanted <= active(), timeout=60)
    assert "DockerHostExporterDown" not in active()


# -- the alerts, end to end: held while their collector is blind, never for the exporter ------


def quick_rules(directory: Path) -> Path:
    """The shipped rules with every `for` at 2s and no keep_firing_for: what keeps an alert up
    here is the look-through alone, and the test need not wait minutes."""
    defaults = AlertSettings()
    settings = AlertSettings(
        for_durations=dict.fromkeys(known_alerts(defaults), "2s"), keep_firing_for="0"
    )
    path = directory / "alerts.yml"
    path.write_text(render_rules(settings))
    return path


def series(metric: str, **labels: str) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def firing(prom: Prometheus, alertname: str, **labels: str) -> list[Any]:
    return prom.query(series("ALERTS", alertname=alertname, alertstate="firing", **labels))


@dataclass
class BlindScene:
    network: str
    orphan: str  # a veth on docker0 with nothing behind it
    restore: Callable[[], None]  # put the MASQUERADE rule back (once)


@pytest.fixture
def blind_scene(engine: Any) -> Iterator[BlindScene]:
    """A Docker network whose MASQUERADE rule is deleted, and orphaned veths on docker0."""
    network = engine.networks.create(f"dhe-blind-{uuid.uuid4().hex[:6]}", labels={"dhe-test": "1"})
    network.reload()
    subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
    rule = ["POSTROUTING", "-s", subnet, "!", "-o", f"br-{network.id[:12]}", "-j", "MASQUERADE"]
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            subprocess.run(["iptables", "-t", "nat", "-A", *rule], check=True, timeout=30)
            restored = True

    with orphan_veths() as made:
        subprocess.run(["iptables", "-t", "nat", "-D", *rule], check=True, timeout=30)
        try:
            yield BlindScene(network.name, made["on_bridge"], restore)
        finally:
            restore()
            network.remove()


def test_alerts_hold_while_their_collector_fails_or_loses_a_privilege(
    blind_scene: BlindScene, tmp_path: Path
) -> None:
    """A MASQUERADE rule missing and an orphaned veth, both alerting; then the exporter goes
    blind in the ways it does on real hosts, one after the other, and both alerts stay firing
    although their series are gone: its procfs unmounted (the network collector fails, the
    legacy firewall backend is unreadable so NAT judges nothing), then restarted without
    CAP_NET_ADMIN (privilege_missing). Back with its privileges and the rule restored, the
    MASQUERADE alert resolves."""
    port = free_port()
    instance = f"127.0.0.1:{port}"
    procfs = tmp_path / "proc"
    procfs.mkdir()
    masq = {"instance": instance, "network": blind_scene.network}
    veth = {"instance": instance, "interface": blind_scene.orphan}
    only = ("--sample.interval=1s", "--no-collector.layers", "--no-collector.conntrack")
    mounts = in_private_mounts(f"mount -t proc proc {procfs}")
    live_masq = series("docker_host_nat_masquerade_missing", **masq)
    live_veth = series("docker_host_veth_orphaned", **veth)
    network_failing = series(
        "docker_host_collector_success", instance=instance, collector="network"
    )
    nat_judged = series("docker_host_nat_judged", instance=instance, family="ipv4")
    refused = series(
        "docker_host_privilege_missing",
        instance=instance,
        collector="nat",
        capability="CAP_NET_ADMIN",
    )

    def both_firing() -> bool:
        return bool(firing(prom, "DockerHostMasqueradeRuleMissing", **masq)) and bool(
            firing(prom, "DockerHostVethOrphaned", **veth)
        )

    def hold(seconds: float, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert check(), prom.api("alerts")
            time.sleep(1)

    with prometheus([instance], quick_rules(tmp_path)) as prom:
        with exporter_process(f"--path.procfs={procfs}", *only, port=port, wrapper=mounts) as (
            _,
            proc,
        ):
            wait_for(both_firing, timeout=90)
            fired = time.time()
            # Blind: the exporter's procfs goes (in its own mount namespace only).
            subprocess.run(
                ["nsenter", "-t", str(proc.pid), "-m", "umount", str(procfs)],
                check=True,
                timeout=30,
            )
            wait_for(
                lambda: (
                    bool(prom.query(f"{network_failing} == 0"))
                    and bool(prom.query(f"{nat_judged} == 0"))
                    and not prom.query(live_masq)
                    and not prom.query(live_veth)
                ),
                timeout=60,
            )
            hold(10, both_firing)

        # Restarted without CAP_NET_ADMIN: nat is refused the firewall, says so, judges nothing.
        setpriv = ("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin")
        with exporter_process(*only, port=port, wrapper=setpriv):
            wait_for(
                lambda: (
                    bool(prom.query(f"{refused} == 1"))
                    and bool(prom.query(f"{series('up', instance=instance)} == 1"))
                    and not prom.query(live_masq)
                ),
                timeout=60,
            )
            hold(10, lambda: bool(firing(prom, "DockerHostMasqueradeRuleMissing", **masq)))

        # Seeing again, with the rule back: resolved by a reading, not by blindness.
        # Not one evaluation resolved it, the exporter's restarts included: a resolved alert
        # leaves a gap (a staleness marker) in its ALERTS series.
        blinded = time.time()
        answer = prom.api(
            "query_range",
            query=series(
                "ALERTS", alertname="DockerHostMasqueradeRuleMissing", alertstate="firing", **masq
            ),
            start=f"{fired + 1:.3f}",
            end=f"{blinded:.3f}",
            step="1",
        )["result"]
        assert len(answer) == 1, answer
        assert len(answer[0]["values"]) >= int(blinded - fired) - 1, answer

        with exporter_process(*only, port=port):
            blind_scene.restore()
            wait_for(lambda: bool(prom.query(f"{live_masq} == 0")), timeout=60)
            wait_for(
                lambda: not firing(prom, "DockerHostMasqueradeRuleMissing", **masq), timeout=30
            )
            # The veth is still orphaned, and seen to be again.
            wait_for(lambda: bool(firing(prom, "DockerHostVethOrphaned", **veth)), timeout=30)


@pytest.fixture(scope="module")
def own_image(engine: Any, exporter_image_tag: str) -> str:
    # The session's build under a second tag of this test's own, which the test removes.
    tag = f"e2e-{uuid.uuid4().hex[:6]}"
    engine.images.get(exporter_image_tag).tag("dhe-test/exporter", tag)
    return f"dhe-test/exporter:{tag}"


def test_no_host_namespace_alert_for_the_exporters_own_container(
    own_image: str, containers: Containers, engine: Any, tmp_path: Path
) -> None:
    """The exporter's image run as the README says (host PID and network namespaces) beside a
    --pid=host workload, under a real Prometheus from the exporter's first scrape on: the
    workload alerts, the exporter's own container never does, not even pending."""
    # Labelled apart from the test bed's label: on a machine shared with other test sessions,
    # their teardown removes every container carrying it.
    own_label = {"dhe-alerts-e2e": "1"}
    workload = engine.containers.run(
        BASE_IMAGE,
        ["sh", "-c", "sleep 3600"],
        name=f"{containers.prefix}-hostpid",
        detach=True,
        labels=own_label,
        pid_mode="host",
    )
    containers.started.append(workload)
    port = free_port()
    instance = f"127.0.0.1:{port}"
    try:
        with prometheus([instance], quick_rules(tmp_path)) as prom:
            exporter = exporter_image.run(
                engine, own_image, f"{containers.prefix}-exporter", port, labels=own_label
            )
            containers.started.append(exporter)
            mine = {"instance": instance, "container": exporter.name}

            def marked() -> bool:
                exporter.reload()
                assert exporter.status == "running", exporter.logs().decode()[-2000:]
                return bool(prom.query(series("docker_host_exporter_container_info", **mine)))

            # The target Prometheus scrapes is the exporter in that container, marking itself.
            wait_for(marked, timeout=90)
            wait_for(
                lambda: bool(
                    firing(
                        prom,
                        "DockerHostContainerSharesHostNamespace",
                        instance=instance,
                        container=workload.name,
                        namespace="pid",
                    )
                ),
                timeout=120,
            )
            shared_metric = "docker_host_container_namespace_shared_with_host"
            # It does share both (the rule leaves it out).
            wait_for(
                lambda: all(
                    prom.query(f"{series(shared_metric, **mine, namespace=ns)} == 1")
                    for ns in ("pid", "net")
                ),
                timeout=30,
            )
            # Seen for more than `for` (2 s) and an evaluation: five samples a second apart.
            shared = series(shared_metric, **mine).replace("}", ',namespace=~"pid|net"}')
            wait_for(
                lambda: len(prom.query(f"count_over_time({shared}[10m]) >= 5")) == 2,
                timeout=30,
            )
            ever = prom.query(
                'count_over_time(ALERTS{alertname="DockerHostContainerSharesHostNamespace",'
                f'instance="{instance}",container=~"{exporter.name}|{exporter.id[:12]}"}}[10m])'
            )
            assert ever == [], ever
    finally:
        with contextlib.suppress(Exception):
            engine.images.remove(own_image, force=True)


# -- every dashboard drawn, from the scene's Prometheus ---------------------------------------
# Last in the module: Grafana's range queries end at the last step boundary (a minute over the
# dashboards' 6 hours), so the scene must have been scraped for a while before one; by now it
# has been, while the tests above ran.

SCRAPE = 1.0  # the scene's Prometheus scrapes every second
STEP = 60  # the widest step Grafana takes for a panel of these dashboards over 6 h
FRESH_CONNECTIONS = 3
CONNTRACK = (
    f'sum(docker_host_container_conntrack_tcp_entries{{job="{JOB}", state="time_wait",'
    f' container=~".+-web"}}) >= {FRESH_CONNECTIONS}'
)


def dashboards_by_uid() -> dict[str, Any]:
    return {d["uid"]: d for d in dashboards()}


def served(host: str, port: int) -> bool:
    """One whole HTTP/1.0 exchange, read to the end: the server closes first and the entry
    goes to TIME_WAIT (closing with unread data would reset it: CLOSE, gone in 10 s)."""
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
            return answer.startswith(b"HTTP/")
    except OSError:
        return False


def samples_before_last_step(prom: Prometheus) -> bool:
    """Grafana's range queries end at the last step boundary: both targets must have several
    samples before it, or a stat drawn now would honestly say "No data"."""
    boundary = math.floor(time.time() / STEP) * STEP
    found = prom.api(
        "query", query=f'count_over_time(up{{job="{JOB}"}}[1m]) >= 10', time=str(boundary)
    )["result"]
    return len(found) == 2


def test_every_panel_of_every_dashboard_draws_data(scene: Scene) -> None:
    """Every dashboard drawn by Grafana's own panel components in Debian's headless Chromium
    (grafana/render.py and the page bundled from grafana/pictures/) from the scene's Prometheus.
    Every panel must draw data, as the page reports it: rows, values or points, never "No data"
    nor an error; units come out as Grafana formats them.

    With DHE_PICTURES_DIR set (`make pictures`), the pictures are written there for the README,
    once the scene has DHE_PICTURES_AFTER seconds (default 60) of data."""
    try:
        bundle_path()
    except PicturesError as missing:
        unavailable(str(missing))
    prom = scene.prom
    # Run alone (`make pictures`, -k), the scene is new: this is where it waits for a boundary.
    wait_for(lambda: samples_before_last_step(prom), timeout=4 * STEP, interval=1)
    pictures_dir = os.environ.get("DHE_PICTURES_DIR")
    if pictures_dir:
        after = float(os.environ.get("DHE_PICTURES_AFTER", "60"))
        threading.Event().wait(max(0.0, scene.since + after - time.time()))
    # Connections to the web container's published port, just made: the conntrack panels show
    # entries the host holds while they are drawn (TIME_WAIT lasts two minutes). Three, and
    # three counted, so that the scene's one, about to expire, is not what is seen.
    for _ in range(FRESH_CONNECTIONS):
        wait_for(lambda: served("127.0.0.1", WEB_PORT), timeout=30, interval=0.5)
    try:
        wait_for(lambda: bool(prom.query(CONNTRACK)), timeout=60, interval=0.5)
    except AssertionError:
        held = prom.query("docker_host_container_conntrack_tcp_entries")
        ran = prom.query('docker_host_collector_success{collector="conntrack"}')
        raise AssertionError(
            f"not {CONNTRACK}; the containers' entries: {held}; conntrack collector: {ran}"
        ) from None
    out = Path(pictures_dir or tempfile.mkdtemp(prefix="dhe-img-"))
    pictures = render_all(prom.base, out, scrape_interval=SCRAPE)

    assert {p.uid for p in pictures} == set(dashboards_by_uid())
    empty = [
        (p.uid, panel.title, panel.error or "No data" if panel.no_data else panel.count)
        for p in pictures
        for panel in p.panels
        if panel.no_data or panel.error or panel.count == 0
    ]
    assert empty == [], "panels drawn without data:\n" + "\n".join(map(str, empty))
    for p in pictures:
        drawn = [x for x in dashboards_by_uid()[p.uid]["panels"] if x["type"] != "row"]
        assert len(p.panels) == len(drawn)
        assert p.path.stat().st_size > 50_000, p.path

    # Units as Grafana formats them: bytes in binary prefixes, rates per second, no 6.78808e+08.
    text = {(p.uid, panel.title): panel.text for p in pictures for panel in p.panels}
    assert re.search(r"\d (B|KiB|MiB|GiB)\b", text["dhe-layers", "Layers on disk"])
    raw = re.compile(r"(?<![\w.-])\d\.\d+e[+-]\d+(?![\w.-])")  # 6.78808e+08, a word alone
    assert [t for t in text.values() if raw.search(t)] == []
    # Each instance is told apart: the collectors table has a row for each exporter.
    collectors = next(
        panel
        for p in pictures
        for panel in p.panels
        if (p.uid, panel.title) == ("dhe-overview", "Collectors")
    )
    assert set(collectors.instances) == {scene.host_exporter, scene.own_exporter}
