"""Shared fixtures. Under CI (CI=true) a missing prerequisite fails the test instead of skipping
it: a green run must mean the real engine, kernel and promtool were exercised."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.engine_client import timed_client
from tests.podman import podman_ready

FIXTURES = Path(__file__).parent / "fixtures"
BASE_IMAGE = "dhe-test/busybox:latest"
# The label's value is this session's own. The sweep at its end removes what carries it, and
# leaves alone what another session on the same host runs meanwhile: a sweep of every container
# labelled `dhe-test` removed a concurrent session's mid-test (the dashboards' web container).
# A key of its own, not `dhe-test`: sessions of checkouts from before still sweep that one.
TEST_LABEL = "dhe-test-session"
SESSION = uuid.uuid4().hex[:12]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# `make test` runs pytest-xdist with --dist loadgroup (docs/testing.md). Every test under
# tests/integration is in an xdist group, so the tests of a group run one after another on one
# worker, in file order, as without xdist. Most are in HOST_GROUP: they share the host's dockerd,
# kernel, bridges and firewall, and many judge the whole host (no orphan, no missing rule), so two
# at once would disturb each other. A test marked `isolated` touches only what it made itself
# under a name of its own (a network namespace, a dockerd with its own bridge, directories and
# socket) and reads nothing another group changes: it is in its module's own group, which runs
# beside the host group and the other modules' (its module-scoped fixtures stay on one worker).
# The rest (tests/unit: no root, no engine, nothing of the host) is spread over the workers, and
# so is an integration test marked `host_free` (it runs a tool on files, say, and neither reads
# nor changes anything of the host). Where a test lives decides by default: one that needs root,
# an engine, a kernel object or a process of its own goes in tests/integration and is in the
# host group without further ado.
HOST_GROUP = "host"
INTEGRATION = Path(__file__).parent / "integration"


def xdist_group_of(path: Path, host_free: bool, isolated: bool = False) -> str | None:
    """A test's xdist group under tests/integration: none if host_free, its module's own if
    isolated, else HOST_GROUP; none outside tests/integration."""
    if INTEGRATION not in path.parents or host_free:
        return None
    return f"own-{path.stem}" if isolated else HOST_GROUP


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "host_free: an integration test that reads and changes nothing of the host's (no engine,"
        " no kernel object, no exporter on the host): it may run beside the host group",
    )
    config.addinivalue_line(
        "markers",
        "isolated: an integration test whose namespaces, dockerds, bridges and files are all its"
        " own, uniquely named, and that reads nothing another group changes: it runs in its"
        " module's own group beside the host group",
    )


def _group(item: pytest.Item) -> str | None:
    return xdist_group_of(
        item.path,
        item.get_closest_marker("host_free") is not None,
        item.get_closest_marker("isolated") is not None,
    )


# tryfirst: an xdist worker turns the mark into the node id's `@group` suffix, which is what the
# scheduler groups by, in a hook of its own that would otherwise run before this one.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = _group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_finish(session: pytest.Session) -> None:
    """In an xdist worker under --dist loadgroup: stop before running anything if an integration
    test is not in its group (the tests of a group would run on several workers at once)."""
    config = session.config
    if not hasattr(config, "workerinput") or config.getoption("dist", None) != "loadgroup":
        return
    loose = [
        i.nodeid for i in session.items if _group(i) and not i.nodeid.endswith(f"@{_group(i)}")
    ]
    if loose:
        raise pytest.UsageError(f"integration tests outside their xdist group: {loose[:3]}")


_ran_host_group = False


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _ran_host_group  # noqa: PLW0603 (this process's one fact: see the engine fixture)
    if _group(item) == HOST_GROUP:
        _ran_host_group = True


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite golden files from the current output instead of comparing",
    )


def unavailable(reason: str) -> None:
    """Skip locally, fail under CI."""
    if IN_CI:
        pytest.fail(f"prerequisite missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def root() -> None:
    if os.geteuid() != 0:
        unavailable("needs root")


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool not installed (Debian package prometheus)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def podman_engine(root: None) -> None:
    """Podman with the test bed's image (scripts/testbed.sh); see tests/podman.py."""
    missing = podman_ready()
    if missing is not None:
        unavailable(missing)


@pytest.fixture(scope="session")
def engine(root: None) -> Iterator[Any]:
    """A real Docker engine with the test bed's images (scripts/testbed.sh), through a client
    whose every call has a deadline (tests/engine_client.py)."""
    try:
        client = timed_client()
        client.images.get(BASE_IMAGE)
    except Exception as exc:
        unavailable(f"no Docker engine with {BASE_IMAGE}: {exc} (run scripts/testbed.sh)")
    yield client
    # The sweep after the host group's tests only: a worker that ran only isolated groups made
    # nothing labelled on the host's engine, and its session may end while the host group's
    # worker still has containers running.
    if _ran_host_group:
        mine = {"label": f"{TEST_LABEL}={SESSION}"}
        for container in client.containers.list(all=True, filters=mine):
            container.remove(force=True)
    client.close()


@pytest.fixture(scope="session")
def exporter_image_tag(engine: Any) -> Iterator[str]:
    """The exporter's image built from this checkout once for the session (the slowest set-up in
    the suite; the tests that run it change nothing in it), under a tag of the session's own:
    another checkout's session may build the shared tag meanwhile."""
    from tests import exporter_image  # noqa: PLC0415 (engine tests only)

    tag = exporter_image.build(f"dhe-test/exporter:session-{uuid.uuid4().hex[:6]}")
    yield tag
    with contextlib.suppress(docker.errors.DockerException):
        engine.images.remove(tag, force=True)


class Containers:
    """Starts test containers with a unique prefix and removes them afterwards."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.prefix = f"dhe-{uuid.uuid4().hex[:6]}"
        self.started: list[Any] = []

    def run(self, name: str, command: str = "sleep 3600", **kwargs: Any) -> Any:
        container = self.client.containers.run(
            kwargs.pop("image", BASE_IMAGE),
            ["sh", "-c", command],
            name=f"{self.prefix}-{name}",
            detach=True,
            labels={TEST_LABEL: SESSION, **kwargs.pop("labels", {})},
            **kwargs,
        )
        self.started.append(container)
        container.reload()
        return container

    def cleanup(self) -> None:
        for container in self.started:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


@pytest.fixture
def containers(engine: Any) -> Iterator[Containers]:
    made = Containers(engine)
    yield made
    made.cleanup()


@pytest.fixture
def network(engine: Any) -> Iterator[Any]:
    """A user-defined bridge network of the test's own, removed with whatever is on it."""
    made = engine.networks.create(
        f"dhe-net-{uuid.uuid4().hex[:6]}", driver="bridge", labels={TEST_LABEL: SESSION}
    )
    made.reload()
    yield made
    made.reload()
    for c in made.containers:
        with contextlib.suppress(Exception):
            made.disconnect(c, force=True)
    made.remove()
