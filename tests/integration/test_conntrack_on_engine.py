"""The conntrack collector on the real kernel and engine: the ctnetlink decoding against
`conntrack -L -o extended` and pyroute2's decoder (in a namespace of the test's own, filled
with `conntrack -I`, which sends no packet), connections between two test containers counted
for both and not for an idle third, the usage ratio past 80% and 95% with nf_conntrack_max
lowered for a moment, and the dump refused without CAP_NET_ADMIN.

Traffic only between containers this test made, on a network it made: a bounded loop of
busybox nc to busybox httpd, through the port the server publishes on that network's gateway."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.readers.ctnetlink import TCP_STATES
from exporter.settings import Settings
from tests.conftest import Containers
from tests.helpers import exporter_process, get, parse, sample_once, select, value, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONNTRACK_ONLY = Settings(collectors=("conntrack",))
SYSCTL = Path("/proc/sys/net/netfilter")
CONNECTIONS = 20


@pytest.fixture
def netns(root: None) -> Iterator[str]:
    """A network namespace of our own: its conntrack table holds only what the test puts in
    it, and goes with it."""
    name = f"dhe-ct-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


# Entries as the kernel would make them, without a packet: IPv4 and IPv6, TCP in several
# states, a DNAT (reply source differs from original destination), UDP and ICMP; enough of one
# kind that most are read by a learnt layout.
def synthetic_entries() -> list[str]:
    lines = [
        f"-I -s 10.77.0.{1 + i % 50} -d 10.78.{i // 250}.{i % 250} -p tcp --sport {2000 + i} "
        f"--dport 443 --state ESTABLISHED -t 600 -u ASSURED"
        for i in range(300)
    ]
    lines += [
        f"-I -s 10.77.1.{i} -d 10.78.9.9 -p tcp --sport {3000 + i} --dport 80 "
        f"--state TIME_WAIT -t 120"
        for i in range(1, 21)
    ]
    lines += [
        "-I -s 10.77.2.1 -d 192.0.2.10 -r 10.79.0.5 -q 10.77.2.1 -p tcp --sport 5555 "
        "--dport 8080 --reply-port-src 80 --reply-port-dst 5555 --state SYN_SENT -t 100",
    ]
    lines += [
        f"-I -s 10.77.3.{i} -d 10.78.0.53 -p udp --sport {4000 + i} --dport 53 -t 30"
        for i in range(1, 11)
    ]
    lines += [
        f"-I -s 10.77.4.{i} -d 10.78.0.1 -p icmp --icmp-type 8 --icmp-code 0 --icmp-id {i} -t 30"
        for i in range(1, 6)
    ]
    lines += [
        f"-I -s fd77::{i:x} -d fd78::1 -p tcp --sport {6000 + i} --dport 443 "
        f"--state ESTABLISHED -t 600"
        for i in range(1, 11)
    ]
    return lines


def conntrack_tool(netns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "conntrack", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def tool_reading(netns: str) -> list[list[Any]]:
    """`conntrack -L -o extended`, as [family, protocol, source, reply source, tcp state, n]."""
    found: Counter[tuple[int, int, str, str, int | None]] = Counter()
    for line in conntrack_tool(netns, "-L", "-o", "extended").splitlines():
        words = line.split()
        family, proto = int(words[1]), int(words[3])
        sources = [w[4:] for w in words if w.startswith("src=")]
        state = TCP_STATES.index(words[5].lower()) if proto == 6 else None
        found[(family, proto, sources[0], sources[1], state)] += 1
    return sorted([*key, n] for key, n in found.items())


def test_decoding_matches_the_conntrack_tool_and_pyroute2(netns: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".ct") as batch:
        batch.write("\n".join(synthetic_entries()) + "\n")
        batch.flush()
        conntrack_tool(netns, "-R", batch.name)
    probe = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.ctprobe"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    readings = json.loads(probe.stdout)
    tool = tool_reading(netns)
    assert sum(row[-1] for row in tool) == len(synthetic_entries())
    assert readings["ours"] == tool
    assert readings["pyroute2"] == tool
    # The DNAT: counted by the reply's source, not the original destination.
    assert [2, 6, "10.77.2.1", "10.79.0.5", TCP_STATES.index("syn_sent"), 1] in tool


def tcp_entries(samples: list[Any], container: str) -> float:
    found = select(samples, "docker_host_container_conntrack_entries", container=container)
    return sum(s.value for s in found if s.labels["protocol"] == "tcp")


def test_connections_between_containers_count_for_both_and_not_for_an_idle_one(
    containers: Containers, network: Any
) -> None:
    """The client reaches the server through the port the server publishes on its network's
    gateway (only there: nothing off the host can reach it). Between two containers on one
    bridge, traffic is tracked in the host's table only where br_netfilter is loaded (it is
    not on this test bed); through the host it always is, whether the published port is
    served by docker-proxy (two entries: client to proxy, proxy to server) or by a hairpin
    DNAT (one entry, with both ends)."""
    gateway = str(network.attrs["IPAM"]["Config"][0]["Gateway"])
    server = containers.run(
        "server",
        "httpd -f -p 8080 -h /tmp",
        network=network.name,
        ports={"8080/tcp": (gateway, None)},
    )
    idle = containers.run("idle", network=network.name)
    server.reload()
    port = server.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    _, before = sample_once(CONNTRACK_ONLY)
    # A bounded loop, to the server only; then it says so and idles.
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
    client = containers.run(
        "client",
        f"for i in $(seq {CONNECTIONS}); do {request} | nc -w 2 {gateway} {port} >/dev/null;"
        " done; echo finished; sleep 3600",
        network=network.name,
    )
    wait_for(lambda: b"finished" in client.logs(), timeout=60)
    _, after = sample_once(CONNTRACK_ONLY)
    assert value(after, "docker_host_conntrack_dump_success") == 1
    assert value(after, "docker_host_conntrack_attributed") == 1
    # Entries expire (TIME_WAIT lasts 120 s) and the loop's wget may retry: a small tolerance.
    opened = tcp_entries(after, client.name)
    served = tcp_entries(after, server.name) - tcp_entries(before, server.name)
    assert CONNECTIONS - 2 <= opened <= CONNECTIONS + 2, opened
    assert CONNECTIONS - 2 <= served <= CONNECTIONS + 2, served
    states = select(after, "docker_host_container_conntrack_tcp_entries", container=client.name)
    assert {s.labels["state"] for s in states} <= {"time_wait", "close", "fin_wait", "last_ack"}
    idle_series = select(after, "docker_host_container_conntrack_entries", container=idle.name)
    assert len(idle_series) == 4 and all(s.value == 0 for s in idle_series)


def test_usage_past_80_and_95_percent_of_a_lowered_limit(root: None) -> None:
    """nf_conntrack_max is lowered for one sample at a time, just above the table's count, and
    restored at once: other tests on this machine open connections too."""
    limit = SYSCTL / "nf_conntrack_max"
    original = limit.read_text()
    try:
        for wanted, floor in ((0.88, 0.8), (0.97, 0.95)):
            count = int((SYSCTL / "nf_conntrack_count").read_text())
            limit.write_text(str(max(1, int(count / wanted))))
            try:
                _, samples = sample_once(CONNTRACK_ONLY)
            finally:
                limit.write_text(original)
            entries = value(samples, "docker_host_conntrack_entries")
            lowered = value(samples, "docker_host_conntrack_entries_limit")
            assert lowered == int(count / wanted)
            assert floor < entries / lowered <= 1.0, (entries, lowered)
    finally:
        limit.write_text(original)
    _, samples = sample_once(CONNTRACK_ONLY)
    assert value(samples, "docker_host_conntrack_entries_limit") == int(original)


def test_without_the_engine_entries_are_unattributed_and_it_says_so(root: None) -> None:
    settings = Settings(collectors=("conntrack",), docker_host="unix:///nonexistent.sock")
    _, samples = sample_once(settings)
    assert value(samples, "docker_host_collector_success", collector="conntrack") == 1
    assert value(samples, "docker_host_conntrack_dump_success") == 1
    assert value(samples, "docker_host_conntrack_attributed") == 0
    assert not select(samples, "docker_host_container_conntrack_entries")
    assert select(samples, "docker_host_conntrack_unattributed_entries", owner="host")


def test_without_cap_net_admin_the_dump_is_refused_and_the_table_still_read(root: None) -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is part of the test bed"
    others = ("containers", "processes", "network", "nat", "firewall", "daemon", "layers")
    with exporter_process(
        "--collector.conntrack.interval=1s",
        *(f"--no-collector.{name}" for name in others),
        wrapper=(setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin"),
    ) as (base, proc):

        def sampled() -> bool:
            found = parse(get(base + "/metrics"))
            return bool(select(found, "docker_host_conntrack_dump_success"))

        wait_for(sampled, timeout=20)
        samples = parse(get(base + "/metrics"))
        proc.terminate()
        log, _ = proc.communicate(timeout=10)
    assert value(samples, "docker_host_collector_success", collector="conntrack") == 1
    assert value(samples, "docker_host_conntrack_dump_success") == 0
    assert (
        value(
            samples,
            "docker_host_privilege_missing",
            collector="conntrack",
            capability="CAP_NET_ADMIN",
        )
        == 1
    )
    assert value(samples, "docker_host_conntrack_entries_limit") > 0
    assert select(samples, "docker_host_conntrack_stat_drop_total")
    assert not select(samples, "docker_host_container_conntrack_entries")
    assert log.count("conntrack dump not read: needs CAP_NET_ADMIN") == 1, log
