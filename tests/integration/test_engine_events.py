"""The container inventory follows dockerd's event stream (one GET /events held open): an idle
run asks dockerd nothing but GET /_ping, a change is listed on the next run after its event, a
broken stream (dockerd restarted) is a full list, counted, and a hung dockerd still fails the
run. The daemon collector reads dockerd's configuration again only on change. All on real
dockerds: the host's (containers prefixed dhe-en) and ones of the tests' own."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.collectors.daemon.source import DaemonConfigSource
from exporter.readers.docker_api import DockerReader, DockerUnavailable
from exporter.readers.inventory import DockerInventory
from exporter.readers.procfs import ProcfsReader
from exporter.tick import Host
from tests.conftest import BASE_IMAGE, Containers
from tests.engine_client import timed_client
from tests.helpers import stop, wait_for
from tests.own_dockerd import OwnDockerd, own_dockerd, start_dockerd
from tests.sockets import FaultyDocker, RecordingProxy

TIMEOUT = 5.0


class Counted:
    """An inventory of a Host, with its full lists and lost streams counted."""

    def __init__(self, docker_host: str, procfs: str = "/proc") -> None:
        self.rereads: list[str] = []
        self.losses = 0
        self.inventory = DockerInventory(
            DockerReader(docker_host, TIMEOUT),
            reread=self.rereads.append,
            lost=self._lost,
        )
        self.host = Host(ProcfsReader(procfs), self.inventory, docker_host)

    def _lost(self) -> None:
        self.losses += 1

    def names(self) -> set[str]:
        return {c.name for c in self.host.tick().engine().containers}

    def close(self) -> None:
        self.host.close()


def logged(client: Any, since: float, until: float) -> int:
    """Container and network events that change a list, in dockerd's event log."""
    return sum(
        1
        for e in client.api.events(
            since=since, until=until, decode=True, filters={"type": ["container", "network"]}
        )
        if not str(e.get("Action", "")).startswith(("exec_", "health_status"))
    )


def events_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "docker events"]


@pytest.fixture
def ours(containers: Containers) -> Containers:
    containers.prefix = f"dhe-en-{uuid.uuid4().hex[:6]}"
    return containers


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[RecordingProxy, Counted]]:
    """The host's dockerd through a recording proxy."""
    proxy = RecordingProxy(tmp_path / "docker.sock")
    counted = Counted(f"unix://{proxy.path}")
    try:
        yield proxy, counted
    finally:
        counted.close()
        proxy.close()
    assert not events_threads(), "close() left the stream's thread running"


@pytest.fixture
def dockerd(engine: Any) -> Iterator[OwnDockerd]:
    with own_dockerd() as made:
        yield made


def test_an_idle_run_asks_only_ping_and_each_change_is_listed_on_the_next_run(
    engine: Any, dockerd: OwnDockerd, tmp_path: Path
) -> None:
    # A dockerd of the test's own: on the host's, other sessions' containers come and go.
    own = timed_client(dockerd.host)
    own.images.load(b"".join(engine.images.get(BASE_IMAGE).save(named=True)))
    proxy = RecordingProxy(tmp_path / "docker.sock", upstream=f"{dockerd.directory}/docker.sock")
    counted = Counted(f"unix://{proxy.path}")
    try:
        first = counted.host.tick().engine()
        assert counted.rereads == ["start"]
        wait_for(lambda: counted.inventory.stream() is not None)
        asked = len(proxy.request_lines)
        for _ in range(5):
            assert counted.host.tick().engine() is first  # the renderer's identity check holds
        idle = proxy.request_lines[asked:]
        assert len(idle) == 5 and all(line.split()[1].endswith("/_ping") for line in idle), idle

        def after(change: Any) -> dict[str, str]:
            """The next run's containers (name: state) once the stream carried every event the
            change made (as many as dockerd's event log holds for it)."""
            state = counted.inventory.stream()
            assert state is not None
            since = time.time()
            change()
            made = logged(own, since - 0.5, time.time() + 0.5)
            assert made >= 1
            wait_for(lambda: (counted.inventory.stream() or state).lists >= state.lists + made)
            return {c.name: c.state for c in counted.host.tick().engine().containers}

        made: list[Any] = []
        prefix = f"dhe-en-{uuid.uuid4().hex[:6]}"
        run = own.containers.run
        command = ["sh", "-c", "sleep 3600"]
        start = lambda: made.append(run(BASE_IMAGE, command, name=f"{prefix}-web", detach=True))  # noqa: E731
        assert after(start) == {f"{prefix}-web": "running"}
        c = made[0]
        assert after(lambda: c.rename(f"{prefix}-renamed")) == {f"{prefix}-renamed": "running"}
        assert after(c.kill) == {f"{prefix}-renamed": "exited"}
        assert after(lambda: c.remove(force=True)) == {}
        # Change-driven lists are not full re-reads: only the first was counted; none was lost.
        assert counted.rereads == ["start"]
        assert counted.losses == 0
        assert proxy.methods == {"GET"}
    finally:
        for container in own.containers.list(all=True):
            container.remove(force=True)
        own.close()
        counted.close()
        proxy.close()
    assert not events_threads(), "close() left the stream's thread running"


def test_an_event_line_too_long_to_keep_counts_as_a_change(
    proxied: tuple[RecordingProxy, Counted], ours: Containers
) -> None:
    _, counted = proxied
    counted.names()
    wait_for(lambda: counted.inventory.stream() is not None)
    state = counted.inventory.stream()
    assert state is not None
    # A container's labels ride in its events: 80 KiB of them make a line past the 64 KiB kept.
    c = ours.run("labelled", labels={"dhe-en.big": "x" * 80 * 1024})
    wait_for(lambda: (counted.inventory.stream() or state).lists > state.lists)
    assert c.name in counted.names()
    # The stream goes on: the next event is read as usual.
    state = counted.inventory.stream()
    assert state is not None
    c.remove(force=True)
    wait_for(lambda: (counted.inventory.stream() or state).lists > state.lists)
    assert c.name not in counted.names()
    assert counted.losses == 0


def test_a_hung_dockerd_fails_the_run_and_the_stream_holds_nothing(
    tmp_path: Path, root: None
) -> None:
    proxy = FaultyDocker(tmp_path / "docker.sock")
    counted = Counted(f"unix://{proxy.path}")
    try:
        counted.names()
        wait_for(lambda: counted.inventory.stream() is not None)
        proxy.hang()  # the open stream stays open: only new requests go unanswered
        with pytest.raises(DockerUnavailable, match="timed out"):
            counted.host.tick().engine()
        proxy.forward()
        counted.names()
        assert counted.rereads == ["start", "error"]  # what happened meanwhile is unknown
    finally:
        counted.close()  # while the thread may wait on a hung answer: bounded by the timeout
        proxy.close()
    assert not events_threads()


def test_a_dockerd_hanging_from_the_start_is_polled_as_before(tmp_path: Path, root: None) -> None:
    proxy = FaultyDocker(tmp_path / "docker.sock", hang=True)
    counted = Counted(f"unix://{proxy.path}")
    try:
        with pytest.raises(DockerUnavailable, match="timed out"):
            counted.host.tick().engine()
        assert counted.inventory.stream() is None
        proxy.forward()
        wait_for(lambda: counted.inventory.stream() is not None, timeout=30)
        counted.names()
    finally:
        counted.close()
        proxy.close()
    assert not events_threads()


def test_a_restarted_dockerd_is_a_lost_stream_and_a_full_list_counted(
    dockerd: OwnDockerd,
) -> None:
    counted = Counted(dockerd.host)
    try:
        assert counted.names() == set()
        wait_for(lambda: counted.inventory.stream() is not None)
        before = counted.inventory.stream()
        assert before is not None
        stop(dockerd.process)
        wait_for(lambda: counted.losses == 1)
        dockerd.process = start_dockerd(dockerd.directory, dockerd.config, "--storage-driver=vfs")
        wait_for(lambda: (counted.inventory.stream() or before).epoch > before.epoch, timeout=30)
        counted.names()
        assert counted.rereads == ["start", "lost_events"]
    finally:
        counted.close()
    assert not events_threads()


def test_the_daemon_collector_reads_again_only_on_change(dockerd: OwnDockerd) -> None:
    counted = Counted(dockerd.host)
    source = DaemonConfigSource(dockerd.host, TIMEOUT)
    try:
        wait_for(lambda: counted.inventory.stream() is not None)
        first = source.read(counted.host.tick())
        assert first.docker_error is None, first.docker_error
        assert source.read(counted.host.tick()) is first  # nothing changed: the same facts

        # daemon.json changed (not yet reloaded): its stat says so.
        dockerd.write({"insecure-registries": ["b.example:5000"]})
        written = source.read(counted.host.tick())
        assert written is not first
        assert dict(written.file_values)["insecure-registries"] == '["b.example:5000"]'
        assert written.reloads == first.reloads
        assert source.read(counted.host.tick()) is written

        # SIGHUP: dockerd reloads it; its reload event on the stream makes the next run read.
        state = counted.inventory.stream()
        assert state is not None
        dockerd.reload()
        wait_for(lambda: (counted.inventory.stream() or state).daemon > state.daemon)
        reloaded = source.read(counted.host.tick())
        assert len(reloaded.reloads) == len(first.reloads) + 1
        assert reloaded.info is not None
        assert "b.example:5000" in json.loads(reloaded.info)["InsecureRegistries"]
        assert source.read(counted.host.tick()) is reloaded
    finally:
        source.close()
        counted.close()


def test_the_daemon_collector_reads_again_after_its_resync_interval(dockerd: OwnDockerd) -> None:
    counted = Counted(dockerd.host)
    source = DaemonConfigSource(dockerd.host, TIMEOUT, resync=0.5)
    try:
        wait_for(lambda: counted.inventory.stream() is not None)
        first = source.read(counted.host.tick())
        time.sleep(0.6)
        again = source.read(counted.host.tick())
        assert again is not first and again == first  # read again, found the same
    finally:
        source.close()
        counted.close()
