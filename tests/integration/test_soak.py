"""Churn soak, bounded in count and time: containers created and removed back to back (some on a
user network, some with a published port) while two clients scrape without pause. Every scrape
parses and passes promtool; no removed container's series outlive the next sample; threads,
file descriptors and RSS stay flat.

The churn is on a dockerd of the test's own (tests/own_dockerd.py's netns_dockerd, managing
iptables in a network namespace of its own, dhe-fo-*), and the exporter runs in that namespace:
every container, network, published port, rule and veth it follows is the test's own, so the
module is `isolated` (tests/conftest.py) and runs beside the host group. It shares the host's
/proc, read only."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_IMAGE
from tests.helpers import exporter_process, get, parse, select, wait_for
from tests.own_dockerd import NetnsDockerd, netns_dockerd

pytestmark = [pytest.mark.integration, pytest.mark.isolated]

# 108 in `make test` (500, then 150 before: it is on the host group's path, the suite's
# longest): 36 to warm up (pools, caches, the first scrapes, the layers collector's first
# runs), then 72 whose growth is measured: every kind of churn (plain, user network, published
# port, both) comes in each 12, so both parts hold each kind several times. A longer soak:
# DHE_SOAK_LIFECYCLES=2000 with --timeout to match.
LIFECYCLES = int(os.environ.get("DHE_SOAK_LIFECYCLES", "108"))
WARM_UP = 36
# On the test's own dockerd, removed here (and with the dockerd).
SOAK_LABEL = "dhe-soak"
# The own dockerd's default bridge, in its namespace.
BRIDGE = "dhe-fo-br0"


def process_usage(pid: int) -> tuple[int, int, float]:
    """(threads, open file descriptors, RSS in MB) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return (len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd")), rss / 1024)


# Its own time: the soak's length is its lifecycles', and a loaded machine stretches each.
SOAK_DEADLINE = 10 * 60


@pytest.mark.timeout(SOAK_DEADLINE + 5 * 60)
def test_churn_soak(engine: Any, promtool: str) -> None:
    # `engine`: the host's, with the test image that netns_dockerd loads into its own.
    with netns_dockerd("dhe-fo-", {"iptables": True}, BRIDGE) as own:
        client = own.client()
        try:
            soak(own, client, promtool)
        finally:
            client.close()


def soak(own: NetnsDockerd, engine: Any, promtool: str) -> None:
    prefix = f"dhe-fo-soak-{uuid.uuid4().hex[:4]}"
    network = engine.networks.create(prefix, labels={SOAK_LABEL: "1"})
    stop = threading.Event()
    scrapes: list[int] = []
    problems: list[str] = []

    # The test's thread in the dockerd's namespace meanwhile: the exporter starts there, and
    # the scrapers (threads started there) reach it on the loopback there.
    with (
        own.entered(),
        exporter_process(
            "--sample.interval=1s", "--collector.layers.interval=5s", f"--docker.host={own.host}"
        ) as (base, proc),
    ):

        def scrape() -> None:
            while not stop.is_set():
                try:
                    body = get(base + "/metrics", timeout=5)
                    parse(body)
                except Exception as exc:  # any failure is the finding
                    problems.append(f"scrape: {exc!r}")
                    continue
                lint = subprocess.run(
                    [promtool, "check", "metrics"],
                    input=body,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
                if lint.returncode != 0:
                    problems.append(f"promtool: {lint.stdout!r} {lint.stderr!r}")
                scrapes.append(len(body))

        scrapers = [threading.Thread(target=scrape) for _ in range(2)]
        for t in scrapers:
            t.start()
        before: tuple[int, int, float] | None = None
        deadline = time.monotonic() + SOAK_DEADLINE
        try:
            for i in range(LIFECYCLES):
                assert time.monotonic() < deadline, f"soak ran out of time after {i} lifecycles"
                kwargs: dict[str, Any] = {}
                if i % 3 == 1:
                    kwargs["network"] = network.name
                if i % 4 == 2:
                    kwargs["ports"] = {"80/tcp": None}  # any free host port
                container = engine.containers.run(
                    BASE_IMAGE,
                    ["sleep", "600"],
                    name=f"{prefix}-{i}",
                    detach=True,
                    labels={SOAK_LABEL: "1"},
                    **kwargs,
                )
                container.remove(force=True)
                if i == min(WARM_UP - 1, LIFECYCLES - 1):
                    before = process_usage(proc.pid)  # after warm-up
        finally:
            stop.set()
            for t in scrapers:
                t.join(60)
            for left_over in engine.containers.list(all=True, filters={"name": prefix}):
                left_over.remove(force=True)  # a lifecycle that failed half-way

        # Two intervals after the last removal, nothing of the churn is left.
        left: set[str] = set()

        def churn_gone() -> bool:
            samples = parse(get(base + "/metrics"))
            left.clear()
            left.update(s.name for s in samples if s.labels.get("container", "").startswith(prefix))
            return not left

        try:
            wait_for(churn_gone, timeout=10)
        except AssertionError:
            outlived = f"removed containers' series outlived 10 s: {sorted(left)}"
            raise AssertionError(outlived) from None
        samples = parse(get(base + "/metrics"))
        assert all(s.value == 1 for s in select(samples, "docker_host_collector_success"))
        after = process_usage(proc.pid)

    network.remove()
    if report := os.environ.get("DHE_SOAK_REPORT"):
        Path(report).write_text(
            json.dumps(
                {
                    "lifecycles": LIFECYCLES,
                    "scrapes": len(scrapes),
                    "before": before,
                    "after": after,
                }
            )
        )
    assert problems == []
    assert len(scrapes) > LIFECYCLES / 5, "the scrapers hardly ran"
    assert before is not None
    threads, fds, rss = before
    assert after[0] <= threads + 2, (before, after)
    assert after[1] <= fds + 5, (before, after)
    assert after[2] <= rss + 8, (before, after)  # MB
