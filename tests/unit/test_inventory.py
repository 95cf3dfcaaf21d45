"""When the shared container inventory lists again while it follows no event stream (dockerd
down, or the stream not answered): its rules, with a stand-in Engine API
(the real one, through a recording proxy, is in tests/integration/test_containers_on_engine.py)."""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.readers.docker_api import (
    BadAnswer,
    ContainerRecord,
    DockerUnavailable,
    EngineFacts,
    listed_one,
)
from exporter.readers.inventory import (
    EVENT_LOG_SIZE,
    EVERYTHING,
    NETWORKS,
    DockerInventory,
    Pending,
    _event,
    _kinds,
    change_of,
)
from exporter.readers.procfs import ProcfsReader
from exporter.tick import Host, Tick
from tests.helpers import wait_for


class Engine:
    """Answers list and event-log calls from what the test says happened."""

    def __init__(self) -> None:
        self.lists = 0
        self.log: list[dict[str, Any]] = []

    def read(self) -> EngineFacts:
        self.lists += 1
        return EngineFacts(containers=(), components=(), api_version="1.41", networks=())

    def events(self, since: float, until: float) -> list[dict[str, Any]]:
        return [e for e in self.log if since <= e["timeNano"] / 1e9 <= until][-EVENT_LOG_SIZE:]

    def close(self) -> None:
        pass


def event(kind: str, at: float) -> dict[str, Any]:
    return {"Type": kind, "Action": "x", "timeNano": int(at * 1e9)}


DOCKERD = frozenset({(50, 1000.0)})


def lists(inv: DockerInventory, engine: Engine) -> bool:
    """Asks the inventory; whether that took a new container list."""
    before = engine.lists
    inv.current(lambda: DOCKERD)
    return engine.lists > before


def asks(tick: Tick, engine: Engine, again: bool = False) -> bool:
    """Asks the tick; whether that took a new container list."""
    before = engine.lists
    (tick.engine_again if again else tick.engine)()
    return engine.lists > before


def inventory(engine: Engine, now: list[float], procfs: Path) -> DockerInventory:
    return DockerInventory(engine, clock=lambda: now[0], max_age=300, follow=False)  # type: ignore[arg-type]


def host(inv: DockerInventory, procfs: Path) -> Host:
    return Host(ProcfsReader(procfs), inv)


def test_lists_again_on_container_or_network_events_only(tmp_path: Path) -> None:
    engine, now = Engine(), [1000.0]
    inv = inventory(engine, now, tmp_path)
    assert lists(inv, engine)
    now[0] = 1015
    assert not lists(inv, engine)
    engine.log.append(event("image", 1020))  # a pull or a tag: containers are as they were
    now[0] = 1030
    assert not lists(inv, engine)
    engine.log.append(event("network", 1040))  # connect, disconnect, create, destroy
    now[0] = 1045
    assert lists(inv, engine)
    engine.log.append(event("container", 1050))
    now[0] = 1060
    assert lists(inv, engine)
    assert engine.lists == 3


def test_lists_again_when_the_log_may_have_dropped_events_or_is_too_old(tmp_path: Path) -> None:
    engine, now = Engine(), [1000.0]
    inv = inventory(engine, now, tmp_path)
    inv.current(lambda: DOCKERD)
    # As many events as dockerd keeps: a container event may have been pushed out.
    engine.log.extend(event("image", 1001 + i / 1000) for i in range(EVENT_LOG_SIZE))
    now[0] = 1010
    assert lists(inv, engine)
    now[0] = 1010 + 299
    assert not lists(inv, engine)
    now[0] = 1010 + 301
    assert lists(inv, engine)


def test_a_failed_list_is_not_trusted_afterwards(tmp_path: Path) -> None:
    engine, now = Engine(), [1000.0]
    inv = inventory(engine, now, tmp_path)
    inv.current(lambda: DOCKERD)

    def broken(since: float, until: float) -> list[dict[str, Any]]:
        raise DockerUnavailable("docker at unix:///x: connection refused")

    engine.events = broken  # type: ignore[method-assign]
    now[0] = 1015
    with pytest.raises(DockerUnavailable, match="refused"):
        inv.current(lambda: DOCKERD)
    engine.events = Engine().events  # type: ignore[method-assign]
    assert lists(inv, engine)


def test_collectors_of_one_tick_share_one_answer_a_failure_included(tmp_path: Path) -> None:
    engine, now = Engine(), [1000.0]
    inv = inventory(engine, now, tmp_path)
    first_tick = host(inv, tmp_path).tick(1.0)
    first = first_tick.engine()
    engine.log.append(event("container", 1000.5))
    now[0] = 1001
    assert first_tick.engine() is first  # the nat collector, a moment after the containers one
    assert asks(host(inv, tmp_path).tick(2.0), engine)

    asked: list[float] = []

    def refused(since: float, until: float) -> list[dict[str, Any]]:
        asked.append(until)
        raise DockerUnavailable("docker at unix:///x: timed out waiting for the daemon")

    engine.events = refused  # type: ignore[method-assign]
    now[0] = 1002
    third = host(inv, tmp_path).tick(3.0)
    with pytest.raises(DockerUnavailable) as one:
        third.engine()
    with pytest.raises(DockerUnavailable) as other:
        third.engine()
    # The same answer: the same reason, and the daemon asked once.
    assert str(other.value) == str(one.value)
    assert len(asked) == 1


def test_a_confirming_second_look_asks_the_event_log_again(tmp_path: Path) -> None:
    engine, now = Engine(), [1000.0]
    inv = inventory(engine, now, tmp_path)
    tick = host(inv, tmp_path).tick(1.0)
    first = tick.engine()
    engine.log.append(event("container", 1001))  # removed while nat waits to look again
    now[0] = 1002
    assert asks(tick, engine, again=True)
    assert tick.engine() is not first  # and the tick's answer is the newer one


@pytest.mark.parametrize(
    ("line", "kinds"),
    [
        (b'{"Type": "container", "Action": "start", "Actor": {"ID": "a"}}', (1, 0)),
        (b'{"Type": "network", "Action": "connect"}', (1, 0)),
        (b'{"Type": "daemon", "Action": "reload"}', (0, 1)),
        # Execs and health checks come every few seconds on some hosts; no list shows them.
        (b'{"Type": "container", "Action": "exec_start: sh -c true"}', (0, 0)),
        (b'{"Type": "container", "Action": "health_status: healthy"}', (0, 0)),
        (b'{"Type": "image", "Action": "pull"}', (0, 0)),
        # Text that cannot be read says nothing for sure: both may have changed.
        (b'{"Type": "contai', (1, 1)),
        (b"[1, 2]", (1, 1)),
        (b"\xff\xfe", (1, 1)),
        (None, (1, 1)),  # a line too long to keep
        (b'{"Type": "container", "Action": 7}', (1, 0)),
    ],
)
def test_what_an_event_line_says_changed(line: bytes | None, kinds: tuple[int, int]) -> None:
    assert _kinds(_event(line)) == kinds


ID = "0123456789abcdef" * 4
OTHER = "fedcba9876543210" * 4


@pytest.mark.parametrize(
    ("line", "change"),
    [
        # Any container event names its container: asked for alone, it is as a list shows it.
        (b'{"Type": "container", "Action": "start", "Actor": {"ID": "%s"}}' % ID.encode(), ID),
        (b'{"Type": "container", "Action": "destroy", "Actor": {"ID": "%s"}}' % ID.encode(), ID),
        (b'{"Type": "container", "Action": "rename", "Actor": {"ID": "%s"}}' % ID.encode(), ID),
        # A connect or disconnect names the container in its attributes.
        (
            b'{"Type": "network", "Action": "connect", "Actor": {"ID": "%s", '
            b'"Attributes": {"container": "%s", "name": "bridge"}}}'
            % (OTHER.encode(), ID.encode()),
            ID,
        ),
        (
            b'{"Type": "network", "Action": "create", "Actor": {"ID": "%s"}}' % OTHER.encode(),
            NETWORKS,
        ),
        (
            b'{"Type": "network", "Action": "destroy", "Actor": {"ID": "%s"}}' % OTHER.encode(),
            NETWORKS,
        ),
        # Whatever does not name one container by its full id: everything listed again.
        (b'{"Type": "container", "Action": "prune", "Actor": {"ID": ""}}', EVERYTHING),
        (b'{"Type": "container", "Action": "start", "Actor": {"ID": "0123456789ab"}}', EVERYTHING),
        (b'{"Type": "container", "Action": "start", "Actor": {"ID": "../../images"}}', EVERYTHING),
        (b'{"Type": "container", "Action": "start", "Actor": {"ID": 7}}', EVERYTHING),
        (b'{"Type": "container", "Action": "start", "Actor": ["x"]}', EVERYTHING),
        (
            b'{"Type": "network", "Action": "connect", "Actor": {"ID": "%s"}}' % OTHER.encode(),
            EVERYTHING,
        ),
        (b'{"Type": "network", "Action": "disconnect", "Actor": {"Attributes": []}}', EVERYTHING),
        (b'{"Type": "network", "Action": 7}', EVERYTHING),
        (b'{"Type": "contai', EVERYTHING),
        (None, EVERYTHING),
    ],
)
def test_what_an_event_asks_of_the_lists(line: bytes | None, change: str) -> None:
    assert change_of(_event(line)) == change


def test_pending_changes_add_up() -> None:
    pending = Pending()
    for change in (ID, OTHER, ID, NETWORKS, None):
        pending.add(change)
    assert pending == Pending({ID, OTHER}, networks=True, everything=False)
    pending.add(EVERYTHING)
    assert pending.everything


def entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Id": ID,
        "Names": ["/web"],
        "Image": "busybox",
        "ImageID": "sha256:1",
        "State": "running",
        "Created": 1700000000,
        "HostConfig": {"NetworkMode": "bridge"},
        "Ports": [{"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
        "Labels": {"team": "a"},
    }
    base.update(fields)
    return base


def test_one_container_listed_alone_is_its_list_record() -> None:
    record = listed_one([entry()], ID, ("team",))
    assert record is not None
    assert (record.name, record.state, record.addresses, record.labels) == (
        "web",
        "running",
        ("172.17.0.2",),
        (("team", "a"),),
    )
    assert record.ports[0].host_port == 8080
    assert listed_one([], ID, ()) is None  # removed


@pytest.mark.parametrize(
    "answer",
    [
        {"message": "x"},  # not a list
        [entry(), entry()],  # an id filter matched several
        [entry(Id=OTHER)],  # another container
        ["x"],
        [entry(Ports=[{"PublicPort": "eighty"}])],
        [entry(Names=7)],
        [entry(Created="yesterday")],
    ],
)
def test_a_malformed_answer_for_one_container_is_a_bad_answer(answer: object) -> None:
    with pytest.raises(BadAnswer):
        listed_one(answer, ID, ())


class Feed:
    """A followed event stream whose lines the test sends."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def lines(self) -> Iterator[bytes | None]:
        while (line := self.queue.get()) != b"":
            yield line

    def interrupt(self) -> None:
        self.queue.put(b"")

    def close(self) -> None:
        pass


class Streaming(Engine):
    """An engine whose event stream the test writes, and which answers for one container what
    the test says (a record, none, or a malformed answer)."""

    base_url = "unix:///stand-in"
    timeout = 5.0

    def __init__(self) -> None:
        super().__init__()
        self.feed = Feed()
        self.answers: dict[str, ContainerRecord | BadAnswer | None] = {}
        self.asked: list[str] = []
        self.pings = 0

    def follow_events(self, filters: dict[str, list[str]]) -> Feed:
        return self.feed

    def ping(self) -> None:
        self.pings += 1

    def read_container(self, container_id: str) -> ContainerRecord | None:
        self.asked.append(container_id)
        answer = self.answers[container_id]
        if isinstance(answer, BadAnswer):
            raise answer
        return answer

    def read_networks(self) -> tuple[()]:
        return ()


def record(container_id: str, name: str) -> ContainerRecord:
    return ContainerRecord(container_id, name, "busybox", "sha256:1", "running", "bridge", 1.0)


def test_events_are_applied_per_container_and_a_malformed_answer_takes_a_full_list(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine, rereads = Streaming(), list[str]()
    inv = DockerInventory(engine, reread=rereads.append)  # type: ignore[arg-type]
    try:
        first = inv.current(lambda: DOCKERD)
        assert (engine.lists, rereads) == (1, ["start"])

        def sent(line: bytes) -> EngineFacts:
            state = inv.stream()
            assert state is not None
            engine.feed.queue.put(line)
            wait_for(lambda: (inv.stream() or state).lists > state.lists)
            return inv.current(lambda: DOCKERD)

        engine.answers[ID] = record(ID, "web")
        started = sent(
            b'{"Type": "container", "Action": "start", "Actor": {"ID": "%s"}}' % ID.encode()
        )
        assert started.containers == (record(ID, "web"),)
        assert (engine.lists, engine.asked) == (1, [ID])
        assert inv.current(lambda: DOCKERD) is started  # nothing since: the same object
        engine.answers[ID] = None
        gone = sent(
            b'{"Type": "container", "Action": "destroy", "Actor": {"ID": "%s"}}' % ID.encode()
        )
        assert gone == first
        assert engine.lists == 1

        engine.answers[OTHER] = BadAnswer("a list filtered by one id gave dict")
        with caplog.at_level(logging.WARNING):
            sent(
                b'{"Type": "container", "Action": "start", "Actor": {"ID": "%s"}}' % OTHER.encode()
            )
        assert engine.lists == 2
        assert rereads == ["start", "error"]
        assert "gave dict; listing every container" in caplog.text

        pruned = sent(b'{"Type": "container", "Action": "prune", "Actor": {"ID": ""}}')
        assert (engine.lists, rereads) == (3, ["start", "error"])  # change-driven, not counted

        # A daemon event (a reload) changes no list: the same object, dockerd only pinged.
        state, pings = inv.stream(), engine.pings
        assert state is not None
        engine.feed.queue.put(b'{"Type": "daemon", "Action": "reload"}')
        wait_for(lambda: (inv.stream() or state).daemon > state.daemon)
        assert inv.current(lambda: DOCKERD) is pruned
        assert (engine.lists, engine.pings) == (3, pings + 1)
    finally:
        inv.close()
