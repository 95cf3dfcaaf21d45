"""The Engine API reader's failure reasons, on real Unix sockets that misbehave (no root)."""

from __future__ import annotations

import gc
import os
import socket
from pathlib import Path

import pytest

from exporter.readers.docker_api import DockerReader, DockerUnavailable, container_record
from tests.sockets import HangingDocker


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
