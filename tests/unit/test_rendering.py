"""Snapshot -> exposition on a host recorded with `inspect --format json` (no root, no engine)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from exporter.collectors import all_collectors
from exporter.facts import ContainerRecord, EngineFacts
from exporter.metrics import render
from exporter.report import render_report, snapshot_from_json, snapshot_json
from exporter.selfmetrics import write_self_metrics
from exporter.snapshot import CollectorState, Snapshot
from tests.conftest import FIXTURES
from tests.helpers import parse, select, value

RECORDED = FIXTURES / "host-snapshot.json"
GOLDEN = FIXTURES / "host-snapshot.prom"
WRITERS = (*(c.write for c in all_collectors()), write_self_metrics)


def recorded() -> Snapshot:
    return snapshot_from_json(RECORDED.read_text(), all_collectors())


def test_recording_round_trips() -> None:
    snapshot = recorded()
    assert snapshot_from_json(snapshot_json(snapshot), all_collectors()) == snapshot


def test_exposition_matches_golden(request: pytest.FixtureRequest) -> None:
    text = render(recorded(), WRITERS).decode()
    if request.config.getoption("--update-golden"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "run pytest --update-golden and review the diff"


def test_recorded_host_facts_join_as_expected() -> None:
    samples = parse(render(recorded(), WRITERS))

    def shared(container: str) -> set[str]:
        return {
            s.labels["namespace"]
            for s in select(
                samples, "docker_host_container_namespace_shared_with_host", container=container
            )
            if s.value == 1
        }

    assert shared("web") == {"cgroup", "user"}
    assert shared("pidhost") == {"cgroup", "pid", "user"}
    assert shared("nethost") == {"cgroup", "net", "user"}
    owner_net = select(
        samples, "docker_host_container_namespace_info", container="owner", namespace="net"
    )[0].labels["inode"]
    assert select(
        samples,
        "docker_host_container_namespace_info",
        container="sidecar",
        namespace="net",
        inode=owner_net,
    )
    assert value(samples, "docker_host_container_zombie_processes", container="zombie") == 1
    assert value(samples, "docker_host_container_processes", container="web") == 2  # + exec
    assert value(samples, "docker_host_shim_orphaned", container_id="5f1e0c0ffee5") == 1
    assert sum(s.value for s in select(samples, "docker_host_shim_orphaned")) == 1
    assert value(samples, "docker_host_container_info", container="stopped", state="exited") == 1
    assert not select(samples, "docker_host_container_pid1_info", container="stopped")
    assert value(samples, "docker_host_containers", state="running") == 7


def with_engine(snapshot: Snapshot, success: bool) -> Snapshot:
    state = snapshot.collectors["containers"]
    return snapshot.with_state(dataclasses.replace(state, success=success))


def test_a_failed_collector_exports_only_its_health() -> None:
    snapshot = with_engine(recorded(), success=False)
    samples = parse(render(snapshot, WRITERS))
    assert value(samples, "docker_host_collector_success", collector="containers") == 0
    assert not select(samples, "docker_host_container_info")
    assert select(
        samples, "docker_host_collector_last_success_timestamp_seconds", collector="containers"
    )
    # /proc facts keep coming, still named from the last good container list.
    assert value(samples, "docker_host_container_processes", container="web") == 2


def test_never_answered_engine_names_by_short_id_and_judges_no_shim() -> None:
    snapshot = recorded()
    snapshot = Snapshot({"processes": snapshot.collectors["processes"]})
    samples = parse(render(snapshot, WRITERS))
    assert not select(samples, "docker_host_shim_orphaned")
    assert not select(samples, "docker_host_collector_success", collector="containers")
    names = {s.labels["container"] for s in select(samples, "docker_host_container_processes")}
    assert all(len(n) == 12 for n in names)


def test_hostile_names_render_valid_exposition(promtool: str) -> None:
    hostile = 'we"ird\\name\nwith\ttabs and ünïcödé ✓'
    engine = EngineFacts(
        containers=(
            ContainerRecord(
                id="f" * 64,
                name=hostile,
                image=hostile + ':tag"',
                image_id="sha256:" + "0" * 64,
                state="running",
                network_mode="bridge",
                created=1.0,
            ),
        ),
        components=(),
        api_version="1.41",
    )
    snapshot = Snapshot().with_state(CollectorState("containers", True, 0.01, 1.0, engine))
    text = render(snapshot, WRITERS)
    samples = parse(text)
    assert value(samples, "docker_host_container_info", container=hostile) == 1
    lint = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=text, capture_output=True, timeout=60
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_report_shows_the_recorded_host() -> None:
    text = render_report(recorded())
    for needle in (
        "CONTAINER PROCESSES",
        "pidhost",
        "cgroup,pid,user",
        "YES",
        "NAMESPACES",
        "DAEMONS",
        "20.10.24",
    ):
        assert needle in text


def test_recording_is_checked_in() -> None:
    assert Path(RECORDED).stat().st_size > 1000
