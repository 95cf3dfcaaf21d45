"""End to end with a real Prometheus (Debian's) scraping two exporters on loopback with the
alert rules loaded: one on the host's engine, one on a dockerd the test controls. On a host set
up with containers, orphaned veths, a missing MASQUERADE rule and a drifted daemon.json, every
dashboard query returns data through Prometheus's HTTP API, and the matching alerts are pending
or firing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.render import render_all
from mixin.alerts import AlertSettings, known_alerts, render_rules
from tests import exporter_image
from tests.conftest import BASE_IMAGE, Containers
from tests.helpers import exporter_process, free_port, get, wait_for
from tests.host_objects import orphan_veths
from tests.integration.test_faults import in_private_mounts
from tests.own_dockerd import OwnDockerd, own_dockerd

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JOB = "docker-host-exporter"


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
def prometheus(targets: list[str], rules: Path | None = None) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is part of the test bed"
    workdir = Path(tempfile.mkdtemp(prefix="dhe-prom-"))
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules or ROOT / "deploy" / "prometheus" / "alerts.yml")],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
    }
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
        shutil.rmtree(workdir, ignore_errors=True)


def _ready(base: str) -> bool:
    try:
        get(f"{base}/-/ready", timeout=2)
        return True
    except OSError:
        return False


def dashboard_queries() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = (
                    target["expr"]
                    .replace("$job", ".*")
                    .replace("$instance", ".*")
                    .replace("$__rate_interval", "15s")
                )
                found.append((path.stem, panel["title"], expr))
    return found


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return bool(conn.recv(64))
    except OSError:
        return False


@pytest.fixture
def host_set_up(containers: Containers, engine: Any) -> Iterator[OwnDockerd]:
    containers.run("web", "httpd -f -p 80", ports={"80/tcp": 18383})
    # One request to its published port, from loopback: a connection the host's conntrack
    # table holds for the web container (in TIME_WAIT for two minutes), for the conntrack panels.
    wait_for(lambda: _answers("127.0.0.1", 18383), timeout=30, interval=0.2)
    containers.run("hostpid", pid_mode="host")
    network = engine.networks.create(f"dhe-e2e-{uuid.uuid4().hex[:6]}", labels={"dhe-test": "1"})
    network.reload()
    subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
    rule = ["POSTROUTING", "-s", subnet, "!", "-o", f"br-{network.id[:12]}", "-j", "MASQUERADE"]
    with orphan_veths(), own_dockerd() as dockerd:
        subprocess.run(["iptables", "-t", "nat", "-D", *rule], check=True, timeout=30)
        try:
            dockerd.write({"insecure-registries": ["a.example:5000"], "log-driver": "json-file"})
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
            network.remove()


def test_dashboards_have_data_and_alerts_fire(host_set_up: OwnDockerd) -> None:
    others = [
        f"--no-collector.{c}" for c in ("containers", "processes", "network", "nat", "layers")
    ]
    with (
        exporter_process("--sample.interval=1s") as (host_exporter, _),
        exporter_process("--sample.interval=1s", f"--docker.host={host_set_up.host}", *others) as (
            own_exporter,
            _,
        ),
        prometheus(
            [host_exporter.removeprefix("http://"), own_exporter.removeprefix("http://")]
        ) as prom,
    ):
        wait_for(lambda: len(prom.query(f'up{{job="{JOB}"}} == 1')) == 2, timeout=60)
        # Long enough for every rate() window to hold several samples.
        wait_for(
            lambda: bool(prom.query("rate(docker_host_veth_receive_bytes_total[15s])")), timeout=60
        )
        wait_for(lambda: bool(prom.query("docker_host_nat_masquerade_missing == 1")), timeout=60)

        empty = [(d, title, expr) for d, title, expr in dashboard_queries() if not prom.query(expr)]
        assert empty == [], "dashboard queries with no data:\n" + "\n".join(map(str, empty))

        wanted = {
            "DockerHostVethOrphaned",
            "DockerHostMasqueradeRuleMissing",
            "DockerHostDaemonConfigReloadNeeded",
            "DockerHostContainerSharesHostNamespace",
        }

        def active() -> set[str]:
            return {
                a["labels"]["alertname"]
                for a in prom.api("alerts")["alerts"]
                if a["state"] in ("pending", "firing")
            }

        wait_for(lambda: wanted <= active(), timeout=60)
        assert "DockerHostExporterDown" not in active()

        # The README's pictures come from this very setup: `make pictures` writes them.
        out = Path(os.environ.get("DHE_PICTURES_DIR") or tempfile.mkdtemp(prefix="dhe-img-"))
        if os.environ.get("DHE_PICTURES_DIR"):
            threading.Event().wait(float(os.environ.get("DHE_PICTURES_AFTER", "60")))
        pictures = render_all(prom.base, out)
        assert len(pictures) == 5
        assert all(p.stat().st_size > 20_000 for p in pictures)


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
def own_image(engine: Any) -> str:
    # A tag of our own: other tests may build the shared tag from another checkout meanwhile.
    return exporter_image.build(f"dhe-test/exporter:e2e-{uuid.uuid4().hex[:6]}")


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
            time.sleep(5)  # more than `for` after it was first seen
            ever = prom.query(
                'count_over_time(ALERTS{alertname="DockerHostContainerSharesHostNamespace",'
                f'instance="{instance}",container=~"{exporter.name}|{exporter.id[:12]}"}}[10m])'
            )
            assert ever == [], ever
    finally:
        with contextlib.suppress(Exception):
            engine.images.remove(own_image, force=True)
