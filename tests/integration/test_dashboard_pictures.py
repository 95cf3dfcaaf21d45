"""Every dashboard drawn by Grafana's own panel components in Debian's headless Chromium
(grafana/render.py and the page bundled from grafana/pictures/), from a real Prometheus
scraping two exporters on the end-to-end test's host (containers, a published port with a
connection, orphaned veths, a missing MASQUERADE rule, a drifted daemon.json on a dockerd of
the test's own). Every panel must draw data, as the page reports it: rows, values or points,
never "No data" nor an error; units come out as Grafana formats them.

With DHE_PICTURES_DIR set (`make pictures`), the pictures are written there for the README,
after DHE_PICTURES_AFTER seconds (default 60) of data.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from grafana.render import PicturesError, bundle_path, render_all
from tests.conftest import unavailable
from tests.helpers import exporter_process, wait_for
from tests.integration.test_prometheus_e2e import (  # noqa: F401 (host_set_up is a fixture)
    JOB,
    Prometheus,
    host_set_up,
    prometheus,
)
from tests.own_dockerd import OwnDockerd

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRAPE = 1.0  # the test's Prometheus scrapes every second
STEP = 60  # the widest step Grafana takes for a panel of these dashboards over 6 h
WEB_PORT = 18383  # where host_set_up publishes its web container
FRESH_CONNECTIONS = 3
CONNTRACK = (
    f'sum(docker_host_container_conntrack_tcp_entries{{job="{JOB}", state="time_wait",'
    f' container=~".+-web"}}) >= {FRESH_CONNECTIONS}'
)


def dashboards() -> dict[str, Any]:
    found = (json.loads(p.read_text()) for p in (ROOT / "grafana" / "dashboards").glob("*.json"))
    return {d["uid"]: d for d in found}


def served(host: str, port: int) -> bool:
    """One whole HTTP/1.0 exchange, read to the end: the server closes first and the entry
    goes to TIME_WAIT (closing with unread data would reset it: CLOSE, gone in 10 s)."""
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
            return answer.startswith(b"HTTP/")
    except OSError:
        return False


def samples_before_last_step(prom: Prometheus) -> bool:
    """Grafana's range queries end at the last step boundary: both targets must have several
    samples before it, or a stat drawn now would honestly say "No data"."""
    boundary = math.floor(time.time() / STEP) * STEP
    found = prom.api(
        "query", query=f'count_over_time(up{{job="{JOB}"}}[1m]) >= 10', time=str(boundary)
    )["result"]
    return len(found) == 2


def test_every_panel_of_every_dashboard_draws_data(host_set_up: OwnDockerd) -> None:  # noqa: F811
    try:
        bundle_path()
    except PicturesError as missing:
        unavailable(str(missing))
    others = [
        f"--no-collector.{c}"
        for c in ("containers", "processes", "network", "nat", "firewall", "layers")
    ]
    with (
        # conntrack's own interval is a minute: short here, for the connection made below.
        exporter_process("--sample.interval=1s", "--collector.conntrack.interval=5s") as (
            host_exporter,
            _,
        ),
        exporter_process("--sample.interval=1s", f"--docker.host={host_set_up.host}", *others) as (
            own_exporter,
            _,
        ),
        prometheus(
            [host_exporter.removeprefix("http://"), own_exporter.removeprefix("http://")]
        ) as prom,
    ):
        wait_for(lambda: len(prom.query(f'up{{job="{JOB}"}} == 1')) == 2, timeout=60)
        wait_for(
            lambda: bool(prom.query("rate(docker_host_veth_receive_bytes_total[15s])")), timeout=60
        )
        wait_for(lambda: bool(prom.query("docker_host_nat_masquerade_missing == 1")), timeout=60)
        wait_for(lambda: samples_before_last_step(prom), timeout=4 * STEP, interval=1)
        pictures_dir = os.environ.get("DHE_PICTURES_DIR")
        if pictures_dir:
            threading.Event().wait(float(os.environ.get("DHE_PICTURES_AFTER", "60")))
        # Connections to the web container's published port, just made: the conntrack panels
        # show entries the host holds while they are drawn (TIME_WAIT lasts two minutes). Three,
        # and three counted, so that the fixture's one, about to expire, is not what is seen.
        for _ in range(FRESH_CONNECTIONS):
            wait_for(lambda: served("127.0.0.1", WEB_PORT), timeout=30, interval=0.5)
        try:
            wait_for(lambda: bool(prom.query(CONNTRACK)), timeout=60, interval=0.5)
        except AssertionError:
            held = prom.query("docker_host_container_conntrack_tcp_entries")
            ran = prom.query('docker_host_collector_success{collector="conntrack"}')
            raise AssertionError(
                f"not {CONNTRACK}; the containers' entries: {held}; conntrack collector: {ran}"
            ) from None
        out = Path(pictures_dir or tempfile.mkdtemp(prefix="dhe-img-"))
        pictures = render_all(prom.base, out, scrape_interval=SCRAPE)

    assert {p.uid for p in pictures} == set(dashboards())
    empty = [
        (p.uid, panel.title, panel.error or "No data" if panel.no_data else panel.count)
        for p in pictures
        for panel in p.panels
        if panel.no_data or panel.error or panel.count == 0
    ]
    assert empty == [], "panels drawn without data:\n" + "\n".join(map(str, empty))
    for p in pictures:
        drawn = [x for x in dashboards()[p.uid]["panels"] if x["type"] != "row"]
        assert len(p.panels) == len(drawn)
        assert p.path.stat().st_size > 50_000, p.path

    # Units as Grafana formats them: bytes in binary prefixes, rates per second, no 6.78808e+08.
    text = {(p.uid, panel.title): panel.text for p in pictures for panel in p.panels}
    assert re.search(r"\d (B|KiB|MiB|GiB)\b", text["dhe-layers", "Layers on disk"])
    raw = re.compile(r"(?<![\w.-])\d\.\d+e[+-]\d+(?![\w.-])")  # 6.78808e+08, a word alone
    assert [t for t in text.values() if raw.search(t)] == []
    # Each instance is told apart: the collectors table has a row for each exporter.
    collectors = next(
        panel
        for p in pictures
        for panel in p.panels
        if (p.uid, panel.title) == ("dhe-overview", "Collectors")
    )
    assert set(collectors.instances) == {
        host_exporter.removeprefix("http://"),
        own_exporter.removeprefix("http://"),
    }
