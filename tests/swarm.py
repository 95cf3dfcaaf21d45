"""The host engine's single-node swarm, for the tests that need one. Only one test may make or
leave the host's swarm at a time (tests/integration/test_real_hosts.py leaves it mid-test), so
they take a lock file first, across pytest processes."""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK = Path("/run/dhe-test-swarm.lock")


def swarm_state(engine: Any) -> str:
    state: str = engine.info().get("Swarm", {}).get("LocalNodeState", "")
    return state


@contextlib.contextmanager
def swarm_lock(wait: float = 900) -> Iterator[None]:
    with LOCK.open("w") as lock:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"another test held {LOCK} (the host's swarm) for {wait:.0f}s"
                    ) from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def single_node_swarm(engine: Any) -> Iterator[bool]:
    """The engine as a swarm manager; made here (advertised on loopback) and left afterwards
    if it was in no swarm, used as it is otherwise. Yields whether it was made here."""
    with swarm_lock():
        made = swarm_state(engine) != "active"
        had_gwbridge = made and gwbridge_exists()  # only a swarm made here is left
        if made:
            subprocess.run(
                ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                check=True,
                capture_output=True,
                timeout=120,
            )
        try:
            yield made
        finally:
            if made:
                leave_swarm(had_gwbridge)


def leave_swarm(had_gwbridge: bool) -> None:
    """Leaves the swarm a test made, and the bridge it made with it."""
    subprocess.run(
        ["docker", "swarm", "leave", "--force"], check=False, capture_output=True, timeout=120
    )
    if not had_gwbridge:
        _remove_network(GWBRIDGE)


# The bridge `swarm init` makes for its tasks' outside traffic; `swarm leave` keeps it, and a
# bridge network left on the host is one more than the next tests' scenes expect.
GWBRIDGE = "docker_gwbridge"


def gwbridge_exists() -> bool:
    return _network_exists(GWBRIDGE)


def _network_exists(name: str) -> bool:
    found = subprocess.run(
        ["docker", "network", "inspect", name], check=False, capture_output=True, timeout=60
    )
    return found.returncode == 0


def _remove_network(name: str, attempts: int = 20) -> None:
    """Removed once its last endpoint (the ingress sandbox's, going with the swarm) is gone."""
    for _ in range(attempts):
        subprocess.run(
            ["docker", "network", "rm", name], check=False, capture_output=True, timeout=60
        )
        if not _network_exists(name):
            return
        time.sleep(0.5)
    # Not the test's failure: said, and left for the next swarm test to use.
    warnings.warn(f"{name} still there after leaving the swarm made for the test", stacklevel=2)
