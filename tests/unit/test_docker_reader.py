"""The Engine API reader's failure reasons, on real Unix sockets that misbehave (no root)."""

from __future__ import annotations

import gc
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.collectors.containers.metrics import make_writer
from exporter.metrics import render
from exporter.readers.docker_api import (
    DockerReader,
    DockerUnavailable,
    EngineFacts,
    container_record,
)
from exporter.snapshot import CollectorState, Snapshot
from tests.helpers import parse, select
from tests.sockets import HangingDocker

EXPORTER_INFO = "docker_host_exporter_container_info"


def test_missing_socket(tmp_path: Path) -> None:
    with pytest.raises(DockerUnavailable, match="socket does not exist"):
        DockerReader(f"unix://{tmp_path}/docker.sock", timeout=1).read()


def test_refusing_socket(tmp_path: Path) -> None:
    path = tmp_path / "docker.sock"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(path))  # bound, never listening: connect() is refused
    try:
        with pytest.raises(DockerUnavailable, match="connection refused"):
            DockerReader(f"unix://{path}", timeout=1).read()
    finally:
        bound.close()


def test_hanging_socket_times_out(tmp_path: Path) -> None:
    hanging = HangingDocker(tmp_path / "docker.sock")
    try:
        with pytest.raises(DockerUnavailable, match="timed out"):
            DockerReader(f"unix://{hanging.path}", timeout=0.3).read()
    finally:
        hanging.close()


def test_container_record_from_list_entry() -> None:
    record = container_record(
        {
            "Id": "0123456789abcdef" * 4,
            "Names": ["/web/db", "/db"],
            "Image": "postgres:16",
            "ImageID": "sha256:abc",
            "State": "Running",
            "HostConfig": {"NetworkMode": "bridge"},
            "Created": 1700000000,
        }
    )
    assert (record.name, record.short_id, record.state) == ("db", "0123456789ab", "running")
    bare = container_record({"Id": "f" * 64})
    assert (bare.name, bare.state, bare.network_mode) == ("f" * 12, "unknown", "")


def test_failed_connects_leave_no_socket_open_until_a_garbage_collection(tmp_path: Path) -> None:
    reader = DockerReader(f"unix://{tmp_path}/missing.sock", timeout=1)
    open_fds = len(os.listdir("/proc/self/fd"))
    gc.disable()
    try:
        for _ in range(20):
            with pytest.raises(DockerUnavailable, match="socket does not exist"):
                reader.events(0, 1)
        assert len(os.listdir("/proc/self/fd")) == open_fds
    finally:
        gc.enable()


def test_the_containers_writer_marks_the_exporters_own_container_from_the_facts_alone() -> None:
    """The source reads which container the exporter runs in; the writer only reads facts."""
    ours, other = (
        container_record({"Id": "a" * 64, "Names": ["/dhe"]}),
        container_record({"Id": "b" * 64, "Names": ["/web"]}),
    )
    engine = EngineFacts((ours, other), (), "1.41", own_container_id="a" * 64)

    def exported(facts: EngineFacts) -> list[dict[str, str]]:
        snapshot = Snapshot().with_state(CollectorState("containers", True, 0.01, 1.0, facts))
        found = select(parse(render(snapshot, [make_writer(())])), EXPORTER_INFO)
        return [dict(s.labels) for s in found]

    assert exported(engine) == [{"container": "dhe", "container_id": "a" * 12}]
    assert exported(replace(engine, own_container_id=None)) == []
