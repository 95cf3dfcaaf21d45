"""The container inventory brings its lists up to date per event: each container an event names
is asked for alone (the list endpoint filtered by its id), so a start, a rename, a stop, a
network connect and disconnect and a removal are each reflected on the next run, exactly as a
full list taken then shows them, without a full list; an event that names no container (a
prune) takes a full list. On a dockerd of the test's own (on the host's, other sessions'
containers come and go), through a recording proxy that counts the requests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.readers.docker_api import DockerReader, EngineFacts
from exporter.readers.inventory import DockerInventory
from exporter.readers.procfs import ProcfsReader
from exporter.tick import Host
from tests.conftest import BASE_IMAGE
from tests.engine_client import timed_client
from tests.helpers import wait_for
from tests.own_dockerd import OwnDockerd, own_dockerd
from tests.sockets import RecordingProxy

# Its dockerd, bridge, proxy socket and containers are its own; the host's engine is only read
# (the test image).
pytestmark = [pytest.mark.integration, pytest.mark.isolated]

TIMEOUT = 5.0
LABEL = "dhe-ce.team"


class Followed:
    """A Host's inventory on an own dockerd through a recording proxy, its full lists counted,
    and a reader of its own straight to the dockerd for the truth: a full list now."""

    def __init__(self, dockerd: OwnDockerd, tmp_path: Path) -> None:
        self.proxy = RecordingProxy(
            tmp_path / "docker.sock", upstream=f"{dockerd.directory}/docker.sock"
        )
        self.rereads: list[str] = []
        self.inventory = DockerInventory(
            DockerReader(f"unix://{self.proxy.path}", TIMEOUT, (LABEL,)),
            reread=self.rereads.append,
        )
        self.host = Host(ProcfsReader("/proc"), self.inventory, f"unix://{self.proxy.path}")
        self.truth = DockerReader(dockerd.host, TIMEOUT, (LABEL,))

    def full_lists(self) -> int:
        """Unfiltered container lists the inventory asked for."""
        return sum(
            1
            for line in self.proxy.request_lines
            if "/containers/json" in line and "filters=" not in line
        )

    def one_container_lists(self) -> int:
        return sum(
            1
            for line in self.proxy.request_lines
            if "/containers/json" in line and "filters=" in line
        )

    def after(self, client: Any, change: Callable[[], object]) -> EngineFacts:
        """The next run's lists once the stream carried every event the change made."""
        state = self.inventory.stream()
        assert state is not None
        since = time.time()
        change()
        made = sum(
            1
            for e in client.api.events(
                since=since - 0.5,
                until=time.time() + 0.5,
                decode=True,
                filters={"type": ["container", "network"]},
            )
            if not str(e.get("Action", "")).startswith(("exec_", "health_status"))
        )
        assert made >= 1
        wait_for(lambda: (self.inventory.stream() or state).lists >= state.lists + made)
        return self.host.tick().engine()

    def close(self) -> None:
        self.host.close()
        self.truth.close()
        self.proxy.close()


@pytest.fixture
def dockerd(engine: Any) -> Iterator[tuple[OwnDockerd, Any]]:
    with own_dockerd() as made:
        own = timed_client(made.host)
        own.images.load(b"".join(engine.images.get(BASE_IMAGE).save(named=True)))
        try:
            yield made, own
        finally:
            for container in own.containers.list(all=True):
                container.remove(force=True)
            for network in own.networks.list(names=["dhe-ce-net"]):
                network.remove()
            own.close()


@pytest.fixture
def followed(dockerd: tuple[OwnDockerd, Any], tmp_path: Path) -> Iterator[Followed]:
    made = Followed(dockerd[0], tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_each_change_is_applied_exactly_without_a_full_list(
    dockerd: tuple[OwnDockerd, Any], followed: Followed
) -> None:
    _, own = dockerd
    first = followed.host.tick().engine()
    assert followed.rereads == ["start"]
    assert followed.full_lists() == 1
    wait_for(lambda: followed.inventory.stream() is not None)
    prefix = f"dhe-ce-{uuid.uuid4().hex[:6]}"
    made: list[Any] = []
    nets: list[Any] = []

    def start() -> None:
        made.append(
            own.containers.run(
                BASE_IMAGE,
                ["sleep", "3600"],
                name=f"{prefix}-web",
                detach=True,
                labels={LABEL: "a", "dhe-ce.other": "not kept"},
                ports={"80/tcp": ("127.0.0.1", None)},
            )
        )

    # Lambdas: the container and network exist only once the steps before ran.
    steps: list[tuple[str, Callable[[], object]]] = [
        ("start", start),
        ("network create", lambda: nets.append(own.networks.create("dhe-ce-net"))),
        ("connect", lambda: nets[0].connect(made[0])),
        ("rename", lambda: made[0].rename(f"{prefix}-renamed")),
        ("disconnect", lambda: nets[0].disconnect(made[0])),
        ("stop", lambda: made[0].kill()),  # noqa: PLW0108
        ("network remove", lambda: nets[0].remove()),  # noqa: PLW0108
        ("remove", lambda: made[0].remove(force=True)),
    ]
    seen = [first]
    for name, change in steps:
        facts = followed.after(own, change)
        assert facts == followed.truth.read(), name  # exactly what a full list shows now
        seen.append(facts)
    record = seen[1].containers[0]
    assert (record.state, record.labels) == ("running", ((LABEL, "a"),))
    assert [p.host_ip for p in record.ports] == ["127.0.0.1"]
    assert "dhe-ce-net" in {n.name for n in seen[2].networks}
    assert len(seen[3].containers[0].addresses) == 2  # connected: an address on each network
    assert seen[4].containers[0].name == f"{prefix}-renamed"
    assert seen[6].containers[0].state == "exited"
    assert seen[-1].containers == ()
    # The first list was the only full one; every change asked for its container alone.
    assert followed.full_lists() == 1
    assert followed.one_container_lists() >= len(steps) - 2  # the network create/remove did not
    assert followed.rereads == ["start"]
    assert followed.proxy.methods == {"GET"}
    # Nothing changed since: the very same object, and only a ping asked.
    asked = len(followed.proxy.request_lines)
    assert followed.host.tick().engine() is seen[-1]
    assert all(line.split()[1].endswith("/_ping") for line in followed.proxy.request_lines[asked:])


def test_an_event_that_names_no_container_takes_a_full_list(
    dockerd: tuple[OwnDockerd, Any], followed: Followed
) -> None:
    _, own = dockerd
    followed.host.tick().engine()
    wait_for(lambda: followed.inventory.stream() is not None)
    name = f"dhe-ce-{uuid.uuid4().hex[:6]}"
    created = followed.after(own, lambda: own.containers.create(BASE_IMAGE, ["true"], name=name))
    assert name in {c.name for c in created.containers}
    lists = followed.full_lists()
    # A prune's own event names no container (each removal has its destroy event besides).
    facts = followed.after(own, own.containers.prune)
    assert followed.full_lists() == lists + 1
    assert facts == followed.truth.read()
    assert name not in {c.name for c in facts.containers}
    assert followed.rereads == ["start"]  # change-driven: not a full re-read's reason
