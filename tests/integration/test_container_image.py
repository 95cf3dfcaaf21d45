"""The Dockerfile, built on the real engine from a locally made Debian base (no registry), run
in the host's PID and network namespaces with read-only mounts and only the capabilities it
needs: it must report the same veth pairs as the exporter on the host."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.collectors import all_collectors
from tests import exporter_image
from tests.conftest import SESSION, TEST_LABEL, Containers
from tests.helpers import answers, free_port, get, parse, sample_once, select, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image(exporter_image_tag: str) -> str:
    return exporter_image_tag


def shared_namespace_alerts(promtool: str, samples: list[Any], container: Any) -> int:
    """How many series the shipped DockerHostContainerSharesHostNamespace verdict (its
    recording rule: the alert itself holds that record while the collectors can judge) gives for
    this container's samples (and the exporter's own) held steady for 10 minutes, evaluated by
    promtool. Other tests' containers on this host are left out."""
    mine = {container.name, container.id[:12]}
    samples = [s for s in samples if "container" not in s.labels or s.labels["container"] in mine]
    families = (
        "docker_host_container_namespace_shared_with_host",
        "docker_host_exporter_container_info",
        "docker_host_container_labels",
        # The verdict is judged only while the target is up and its collectors can see.
        "docker_host_collector_success",
        "docker_host_privilege_missing",
    )
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    (rule,) = [
        r
        for g in rules["groups"]
        for r in g["rules"]
        if r.get("record") == "docker_host:last_judged:DockerHostContainerSharesHostNamespace"
    ]
    series = [
        {
            "series": s.name
            + "{"
            + ",".join(
                f'{k}="{v}"'
                for k, v in {**s.labels, "job": "docker-host-exporter", "instance": "h"}.items()
            )
            + "}",
            "values": f"{s.value:g}x10",
        }
        for s in samples
        if s.name in families
    ] + [{"series": 'up{job="docker-host-exporter",instance="h"}', "values": "1x10"}]
    for count in range(len(series) + 1):
        case = {
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": series,
                    "promql_expr_test": [
                        {
                            "expr": f"count({rule['expr']}) or vector(0)",
                            "eval_time": "10m",
                            "exp_samples": [{"labels": "{}", "value": count}],
                        }
                    ],
                }
            ],
        }
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "case.yml"
            path.write_text(yaml.safe_dump(case))
            ran = subprocess.run(
                [promtool, "test", "rules", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        if ran.returncode == 0:
            return count
    raise AssertionError(f"promtool agreed with no count: {ran.stdout}{ran.stderr}")


def test_image_in_host_namespaces_reports_what_the_host_exporter_does(
    image: str, containers: Containers, engine: Any, promtool: str
) -> None:
    peers = [containers.run(f"peer{i}") for i in range(3)]
    port = free_port()
    exporter = exporter_image.run(
        engine,
        image,
        f"{containers.prefix}-exporter",
        port,
        environment={"HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"},
        healthcheck={
            "test": [
                "CMD",
                "/opt/docker-host-exporter/bin/python",
                "-c",
                "import os, urllib.request; urllib.request.urlopen("
                "os.environ['HEALTHCHECK_URL'], timeout=2)",
            ],
            "interval": 1_000_000_000,
            "timeout": 2_000_000_000,
            "retries": 3,
        },
    )
    containers.started.append(exporter)
    base = f"http://127.0.0.1:{port}"

    def collectors_ok() -> bool:
        try:
            samples = parse(get(base + "/metrics", timeout=2))
        except OSError:
            return False
        states = select(samples, "docker_host_collector_success")
        return len(states) == len(all_collectors()) and all(s.value == 1 for s in states)

    wait_for(collectors_ok, timeout=60, interval=0.5)
    inside = parse(get(base + "/metrics"))
    _, outside = sample_once()

    def pairs(samples: list[Any]) -> set[tuple[str, ...]]:
        return {
            (s.labels["interface"], s.labels["container"], s.labels["container_interface"])
            for s in select(samples, "docker_host_veth_info")
        }

    assert pairs(inside) == pairs(outside)
    assert {p.name for p in peers} <= {c for _, c, _ in pairs(inside)}

    # It knows its own container, and the host-namespace alert leaves it out.
    marked = select(inside, "docker_host_exporter_container_info")
    assert [(s.labels["container"], s.labels["container_id"]) for s in marked] == [
        (exporter.name, exporter.id[:12])
    ]
    assert select(
        inside, "docker_host_container_namespace_shared_with_host", container=exporter.name,
        namespace="pid",
    )[0].value == 1  # fmt: skip
    assert shared_namespace_alerts(promtool, inside, exporter) == 0
    # The same exposition without the mark would page for the exporter itself (pid and net).
    unmarked = [s for s in inside if s.name != "docker_host_exporter_container_info"]
    assert shared_namespace_alerts(promtool, unmarked, exporter) == 2
    wait_for(
        lambda: engine.api.inspect_container(exporter.id)["State"]["Health"]["Status"] == "healthy",
        timeout=30,
    )


def test_image_as_pid_1_of_its_own_namespace_stops_cleanly_on_docker_stop(
    image: str, containers: Containers, engine: Any
) -> None:
    # PID 1 of a PID namespace gets only the signals it handles; the exporter takes SIGTERM
    # with sigwait, blocked rather than handled, which the kernel still queues for it.
    port = free_port()
    exporter = engine.containers.run(
        image,
        [f"--web.listen-address=127.0.0.1:{port}", "--sample.interval=1s"],
        name=f"{containers.prefix}-pid1",
        detach=True,
        labels={TEST_LABEL: SESSION},
        network_mode="host",
        read_only=True,
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"}},
    )
    containers.started.append(exporter)
    wait_for(
        lambda: answers(
            f"http://127.0.0.1:{port}/metrics", b"docker_host_collector_success", timeout=2
        ),
        timeout=60,
        interval=0.5,
    )
    exporter.reload()
    status = Path(f"/proc/{exporter.attrs['State']['Pid']}/status").read_text()
    (nspid,) = [line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")]
    assert nspid[-1] == "1", nspid  # PID 1 in its own namespace
    exporter.stop(timeout=30)  # SIGKILL after 30 s would exit 137
    exporter.reload()
    assert exporter.attrs["State"]["ExitCode"] == 0, exporter.logs().decode()[-2000:]
    assert "signal=SIGTERM" in exporter.logs().decode()
