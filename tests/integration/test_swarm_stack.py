"""deploy/swarm/ for real: the stack deployed on a single-node swarm of the host engine with the
image built from this checkout, a real Prometheus running the shipped configuration (node
discovery through the engine's socket, `instance` = the node's hostname) and the shipped alert
rules, an orphaned veth on that host raising DockerHostVethOrphaned for that hostname, and
nothing of the stack left behind once it is removed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.settings import Settings
from tests.helpers import free_port, get, parse, sample_once, select, wait_for
from tests.host_objects import orphan_veths
from tests.integration.test_prometheus_e2e import Prometheus, quick_rules, serve_prometheus
from tests.swarm import GWBRIDGE, single_node_swarm

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SWARM = ROOT / "deploy" / "swarm"
NETWORK = Settings(collectors=("containers", "network"))


@pytest.fixture(scope="module")
def image(exporter_image_tag: str) -> str:
    """The session's one build of this checkout's image (tests/conftest.py)."""
    return exporter_image_tag


def docker(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


def stack_file(directory: Path) -> Path:
    """The shipped stack, sampling every two seconds and health-checked as often (so the test
    need not wait minutes); everything else as shipped."""
    stack = yaml.safe_load((SWARM / "stack.yml").read_text())
    service = stack["services"]["exporter"]
    service["command"] = [*service["command"], "--sample.interval=2s"]
    service["healthcheck"] = {**service["healthcheck"], "interval": "2s", "start_period": "2s"}
    service["deploy"]["labels"] = {"dhe-test": "1"}
    path = directory / "stack.yml"
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    return path


@contextlib.contextmanager
def swarm_prometheus(directory: Path, port: int) -> Iterator[Prometheus]:
    """Prometheus with the shipped deploy/swarm/prometheus.yml: its discovery and relabelling
    untouched; only the intervals, the exporter's port and the rules' `for` shortened."""
    config = yaml.safe_load((SWARM / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(quick_rules(directory))]
    (job,) = config["scrape_configs"]
    (sd,) = job["dockerswarm_sd_configs"]
    sd.update(port=port, refresh_interval="1s")
    with serve_prometheus(config, directory) as server:
        yield server


def task_containers(engine: Any, stack: str, running: bool) -> list[dict[str, Any]]:
    """The stack's task containers, listed in one call: Swarm removes old tasks' containers
    at any moment, and the high-level list inspects each one after listing them."""
    filters: dict[str, str] = {"label": f"com.docker.stack.namespace={stack}"}
    if running:
        filters["status"] = "running"
    found: list[dict[str, Any]] = engine.api.containers(all=not running, filters=filters)
    return found


def rules_naming(port: int) -> list[str]:
    text = subprocess.run(
        ["iptables-save"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    text += subprocess.run(
        ["nft", "list", "ruleset"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    return [line for line in text.splitlines() if f"dport {port}" in line]


def test_stack_is_discovered_scraped_and_its_alerts_name_the_node(image: str, engine: Any) -> None:
    port = free_port()
    name = f"dhe{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="dhe-swarm-"))
    env = {**os.environ, "DHE_IMAGE": image, "DHE_PORT": str(port)}
    with single_node_swarm(engine):
        hostname = docker("node", "inspect", "self", "--format", "{{.Description.Hostname}}")
        hostname = hostname.strip()
        networks_before = {n.name for n in engine.networks.list()}

        def tasks(running: bool = False) -> list[dict[str, Any]]:
            return task_containers(engine, name, running)

        try:
            docker(
                "stack", "deploy", "--resolve-image", "never", "-c",
                str(stack_file(workdir)), name, env=env,
            )  # fmt: skip
            # Its task on this node, healthy by the stack's own healthcheck.
            wait_for(lambda: "(healthy)" in str([c["Status"] for c in tasks(running=True)]),
                     timeout=180, interval=0.25)  # fmt: skip

            with swarm_prometheus(workdir, port) as prom:
                mine = f'job="docker-host-exporter",instance="{hostname}"'

                def scraped() -> bool:
                    return bool(prom.query(f"up{{{mine}}} == 1"))

                wait_for(scraped, timeout=120, interval=0.25)
                # The target is the stack's task: it names its own container.
                marked = prom.query(f"docker_host_exporter_container_info{{{mine}}}")
                names = {c["Names"][0].lstrip("/") for c in tasks()}
                assert len(marked) == 1 and marked[0]["metric"]["container"] in names, marked
                # Every collector succeeding in one scrape (a loaded machine times one out now
                # and then).
                ok = f"count(docker_host_collector_success{{{mine}}} == 1)"
                every = f"count(docker_host_collector_success{{{mine}}})"
                wait_for(lambda: bool(prom.query(f"{ok} == {every}")), timeout=120, interval=0.25)
                # The stack's capabilities reached the task: nothing is refused for want of one.
                refused = prom.query(f"docker_host_privilege_missing{{{mine}}} == 1")
                assert refused == [], refused

                with orphan_veths() as made:
                    alert = (
                        'ALERTS{alertname="DockerHostVethOrphaned",alertstate="firing",'
                        f'{mine},interface="{made["on_bridge"]}"}}'
                    )
                    wait_for(lambda: bool(prom.query(alert)), timeout=180, interval=0.25)
        finally:
            subprocess.run(
                ["docker", "stack", "rm", name], capture_output=True, timeout=120, check=False
            )
            shutil.rmtree(workdir, ignore_errors=True)

        # Removing the stack leaves no container, network, veth or rule of its own behind.
        wait_for(lambda: tasks() == [], timeout=120, interval=0.25)
        # (docker_gwbridge is the swarm's, made when its first sandbox needs it: not the stack's.)
        assert {n.name for n in engine.networks.list()} - networks_before - {GWBRIDGE} == set()
        assert not engine.networks.list(filters={"label": f"com.docker.stack.namespace={name}"})
        # Swarm's own bridge holds only what the swarm justifies (the ingress sandbox's veth
        # appears on it a while after `swarm init`): no veth of a task is left there.
        _, samples = sample_once(NETWORK)
        leaked = [
            s.labels["interface"]
            for s in select(samples, "docker_host_veth_orphaned", bridge="docker_gwbridge")
            if s.value
        ]
        assert leaked == []
        assert rules_naming(port) == []


def test_stack_without_socket_capability_or_host_proc_says_what_it_cannot_see(
    image: str, engine: Any
) -> None:
    """The stack deployed with three mistakes at once: no Docker socket, NET_ADMIN not added,
    and neither the host's /proc nor --path.procfs (so /proc is the task's own). It serves,
    and each loss is named: by collector_success 0 and its log line, or privilege_missing."""
    port = free_port()
    name = f"dhe{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="dhe-swarm-"))
    path = stack_file(workdir)
    stack = yaml.safe_load(path.read_text())
    service = stack["services"]["exporter"]
    service["volumes"] = []
    service["cap_add"] = [c for c in service["cap_add"] if c != "NET_ADMIN"]
    service["command"] = [c for c in service["command"] if not c.startswith("--path.procfs")]
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    env = {**os.environ, "DHE_IMAGE": image, "DHE_PORT": str(port)}
    with single_node_swarm(engine):

        def tasks(running: bool = False) -> list[dict[str, Any]]:
            return task_containers(engine, name, running)

        try:
            docker("stack", "deploy", "--resolve-image", "never", "-c", str(path), name, env=env)
            base = f"http://127.0.0.1:{port}"
            seen: dict[str, float] = {}

            def judged() -> bool:
                try:
                    samples = parse(get(base + "/metrics", timeout=2))
                except OSError:
                    return False
                seen.clear()
                for s in select(samples, "docker_host_collector_success"):
                    seen[s.labels["collector"]] = s.value
                for s in select(samples, "docker_host_privilege_missing"):
                    seen[f"{s.labels['collector']}/{s.labels['capability']}"] = s.value
                return {"containers", "processes", "network", "daemon"} <= seen.keys()

            wait_for(judged, timeout=180, interval=0.25)
            for collector in ("containers", "processes", "network", "daemon", "layers"):
                assert seen[collector] == 0, seen
            assert seen.get("nat/CAP_NET_ADMIN") == 1, seen
            (task,) = tasks(running=True)
            logs = engine.api.logs(task["Id"]).decode()
            assert "/proc shows the processes of the exporter's own container" in logs, logs
            assert f"own container {task['Id'][:12]}" in logs, logs
            assert "docker.sock" in logs, logs
        finally:
            subprocess.run(
                ["docker", "stack", "rm", name], capture_output=True, timeout=120, check=False
            )
            shutil.rmtree(workdir, ignore_errors=True)
        wait_for(lambda: tasks() == [], timeout=120, interval=0.25)
