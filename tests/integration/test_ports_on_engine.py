"""The published-port verdicts on the real engine and kernel: listeners read through
/proc/PID/net against `ss` run inside the container's namespace, ok and broken ports on the
host's engine, and, on a dockerd of the test's own in a network namespace of its own (where
the test may change sysctls and rules), IP forwarding off, a deleted per-port ACCEPT and a
DOCKER-USER DROP. And that the exporter changed nothing and sent nothing while it looked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.collectors.ports.options import LISTENER_REFRESH
from exporter.readers.proc_net import BoundSocket, bound_sockets
from exporter.settings import Settings
from tests.conftest import Containers
from tests.helpers import (
    Sample,
    host_processes,
    kill_children,
    parse,
    port_verdict,
    sample_once,
    select,
    value,
    wait_for,
)
from tests.own_dockerd import Ipv6Dockerd, ipv6_dockerd

pytestmark = pytest.mark.integration

COLLECTORS = ("nat", "firewall", "network", "daemon", "ports")
# Every publishing container read in one sample (other tests' containers publish too).
ALL_READ = {LISTENER_REFRESH: 0.001}
HTTPD = "exec httpd -f -p 80"
# busybox's nc has no UDP mode here; its DHCP server binds UDP 67 and sends nothing unasked.
UDHCPD = (
    "mkdir -p /var/lib/misc && touch /var/lib/misc/udhcpd.leases && "
    "printf 'interface eth0\\nstart 10.9.0.10\\nend 10.9.0.20\\n' > /tmp/u.conf && "
    "exec udhcpd -f /tmp/u.conf"
)
BOTH = f"({UDHCPD}) & {HTTPD}"


def pid_of(container: Any) -> int:
    container.reload()
    return int(container.attrs["State"]["Pid"])


def ss_sockets(pid: int) -> set[BoundSocket]:
    """`ss -ltun` inside the namespace: the independent reading. ss prints a dual-stack IPv6
    wildcard as `*`, so each family is asked on its own."""
    found = set()
    for family, wildcard in (("-4", "0.0.0.0"), ("-6", "::")):
        out = subprocess.run(
            ["nsenter", "-t", str(pid), "-n", "ss", "-H", "-l", "-t", "-u", "-n", family],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        for line in out.splitlines():
            fields = line.split()
            protocol, local = fields[0], fields[4]
            address, _, port = local.rpartition(":")
            address = address.strip("[]").split("%")[0]
            found.add(BoundSocket(protocol, wildcard if address == "*" else address, int(port)))
    return found


def ports_samples(settings: Settings) -> list[Sample]:
    _, samples = sample_once(settings)
    return samples


def verdict_of(samples: list[Sample], container: str, **labels: str) -> dict[str, str]:
    """host_address -> "ok", or the first broken (or unknown) hop."""
    found = {}
    for s in select(samples, "docker_host_published_port_ok", container=container, **labels):
        found[s.labels["host_address"]] = port_verdict(samples, s)
    return found


def test_listeners_read_through_proc_match_ss_inside_the_namespace(
    containers: Containers,
) -> None:
    c = containers.run("listens", BOTH, ports={"80/tcp": None, "67/udp": None})

    def listening() -> bool:
        return {80, 67} <= {s.port for s in ss_sockets(pid_of(c))}

    wait_for(listening, timeout=30)
    pid = pid_of(c)
    ours = set(bound_sockets("/proc", pid, "tcp", [1])) | set(
        bound_sockets("/proc", pid, "udp", [1])
    )  # port 1 is never bound: tcp6 and udp6 are read too
    assert ours == ss_sockets(pid)
    assert BoundSocket("udp", "0.0.0.0", 67) in ours


def test_listening_ports_are_ok_and_silent_ones_broken_at_the_listener_only(
    containers: Containers,
) -> None:
    serving = containers.run("serving", BOTH, ports={"80/tcp": 18281, "67/udp": 18282})
    silent = containers.run("silent", ports={"80/tcp": 18283, "67/udp": 18284})
    wait_for(lambda: {80, 67} <= {s.port for s in ss_sockets(pid_of(serving))}, timeout=30)
    snapshot, samples = sample_once(Settings(collectors=COLLECTORS, options=ALL_READ))
    assert snapshot.collectors["ports"].success, snapshot.collectors["ports"].error
    for protocol in ("tcp", "udp"):
        assert set(verdict_of(samples, serving.name, protocol=protocol).values()) == {"ok"}
        assert set(verdict_of(samples, silent.name, protocol=protocol).values()) == {
            "broken:listener"
        }
    # Exactly one broken series per silent port, every other hop whole: the listener only.
    broken = select(samples, "docker_host_published_port_broken", container=silent.name)
    assert len(broken) == len(
        select(samples, "docker_host_published_port_ok", container=silent.name)
    )
    assert select(samples, "docker_host_published_port_unknown", container=serving.name) == []
    # The first run read every publishing container: counted as the cadence's start.
    assert value(samples, "docker_host_full_rereads_total", collector="ports", reason="start") == 1


def _counters(interface: str) -> tuple[int, ...]:
    stats = Path("/sys/class/net", interface, "statistics")
    return tuple(
        int((stats / name).read_text())
        for name in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes")
    )


def _host_veth_of(container: Any) -> str:
    """The host end of the container's eth0, by the index its iflink names (read through
    /proc/PID/root: no exec)."""
    iflink = Path(f"/proc/{pid_of(container)}/root/sys/class/net/eth0/iflink")
    index = int(iflink.read_text())
    for link in Path("/sys/class/net").iterdir():
        if (link / "ifindex").exists() and int((link / "ifindex").read_text()) == index:
            return link.name
    raise AssertionError(f"no host link with index {index}")


def _rules_of(mark: str) -> list[str]:
    """The nat and filter rules, with their counters, that name the container's address or its
    host port: what a packet to the port would count on."""
    found = []
    for table in ("nat", "filter"):
        saved = subprocess.run(
            ["iptables-save", "-c", "-t", table],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        found += [line for line in saved.splitlines() if mark in line]
    return found


def test_the_exporter_sends_nothing_and_changes_nothing(
    containers: Containers, network: Any
) -> None:
    # On a bridge of its own: docker0 floods other tests' broadcasts to every port.
    silent = containers.run("untouched", ports={"80/tcp": 18285}, network=network.name)
    veth = _host_veth_of(silent)
    # The host's own IPv6 chatter (router solicitations, repeated with backoff, and MLD
    # reports) on the test's bridge and veth would count too: off on those two links, which
    # this test made and which go with it. Then wait until the counters stand still for 3 s.
    for link in (veth, f"br-{network.id[:12]}"):
        subprocess.run(
            ["sysctl", "-qw", f"net.ipv6.conf.{link}.disable_ipv6=1"], check=True, timeout=30
        )
    before, still = _counters(veth), 0
    deadline = time.monotonic() + 60
    while still < 3 and time.monotonic() < deadline:
        time.sleep(1)
        if not Path("/sys/class/net", veth).exists():
            silent.reload()  # raises NotFound when the container was removed meanwhile
            raise AssertionError(f"{veth} went away; the container is {silent.status}")
        now = _counters(veth)
        still = still + 1 if now == before else 0
        before = now
    address = next(iter(silent.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    marks = ("--dport 18285 ", f"{address}/32")
    rules = [r for m in marks for r in _rules_of(m)]
    settings = Settings(collectors=COLLECTORS, options=ALL_READ)
    for _ in range(3):  # broken: each sample reads twice
        sample_once(settings)
    assert _counters(veth) == before
    assert [r for m in marks for r in _rules_of(m)] == rules
    assert rules, "no DNAT/ACCEPT rules carry the port: nothing was checked"


# -- on a dockerd of the test's own, in its own network namespace ------------------------------

SAMPLE = """
import sys, time
from exporter.collectors import all_collectors
from exporter.collectors.ports.options import LISTENER_REFRESH
from exporter.metrics import render
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Snapshot
from exporter.tick import Host
settings = Settings(
    collectors=("nat", "firewall", "network", "daemon", "ports"),
    docker_host=sys.argv[1],
    options={LISTENER_REFRESH: float(sys.argv[2])},
)
defs = [c for c in all_collectors() if c.name in settings.collectors]
sources = {c.name: c.source(settings) for c in defs}
writers = [c.write_all(settings) for c in defs]
host = Host.open(docker_host=settings.docker_host)
snapshot = Snapshot()
for _ in sys.stdin:  # a run of the same sources per line, as the sampler's
    tick = host.tick()
    for c in defs:
        read = sources[c.name].read(tick)  # facts, or Sampled: facts and counters
        snapshot = snapshot.with_state(CollectorState.succeeded(c.name, read, 0.0, time.time()))
    sys.stdout.buffer.write(render(snapshot, writers) + b"# EOF\\n")
    sys.stdout.flush()
"""


@pytest.fixture(scope="module")
def own() -> Iterator[Ipv6Dockerd]:
    with ipv6_dockerd() as made:
        yield made


def own_samples(made: Ipv6Dockerd, runs: int, refresh: float = 0.001) -> list[list[Sample]]:
    """Successive samples of one exporter (one set of sources) in the dockerd's namespace."""
    with Driver(made, refresh) as driver:
        return [driver.sample() for _ in range(runs)]


class Driver:
    """One exporter's sources in the dockerd's namespace, sampled on demand, at the default
    15 s interval (a run per sample: `refresh` counts in runs of 15 s)."""

    def __init__(self, made: Ipv6Dockerd, refresh: float) -> None:
        self.process = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{made.netns}",
                sys.executable,
                "-c",
                SAMPLE,
                made.host,
                str(refresh),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PATH": made.path},
        )

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *_: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)

    def sample(self) -> list[Sample]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"\n")
        self.process.stdin.flush()
        lines = []
        while (line := self.process.stdout.readline()) != b"# EOF\n":
            assert line, f"the sampling process ended: {self.process.wait(30)}"
            lines.append(line)
        return parse(b"".join(lines))


def own_sample(made: Ipv6Dockerd) -> list[Sample]:
    return own_samples(made, 1)[0]


def own_inspect(made: Ipv6Dockerd) -> str:
    return made.run(sys.executable, "-m", "exporter", "inspect", "--docker.host", made.host)


@pytest.fixture(scope="module")
def web(own: Ipv6Dockerd) -> Iterator[Any]:
    client = own.client()
    container = client.containers.run(
        "dhe-test/busybox:latest",
        ["sh", "-c", BOTH],
        name="ports-web",
        detach=True,
        ports={"80/tcp": 18080, "67/udp": 18067},
    )
    wait_for(lambda: {80, 67} <= {s.port for s in ss_sockets(pid_of(container))}, timeout=30)
    yield container
    container.remove(force=True)
    client.close()


def ipv4_verdicts(samples: list[Sample]) -> dict[str, str]:
    return {
        protocol: verdict
        for protocol in ("tcp", "udp")
        for verdict in verdict_of(
            samples, "ports-web", protocol=protocol, host_address="0.0.0.0"
        ).values()
    }


# The tests on `own` are isolated (tests/conftest.py): its dockerd, rules and containers are in a
# network namespace of its own; the host's containers' tests stay in the host group.
@pytest.mark.isolated
def test_own_engine_ports_are_ok(own: Ipv6Dockerd, web: Any) -> None:
    samples = own_sample(own)
    assert ipv4_verdicts(samples) == {"tcp": "ok", "udp": "ok"}, verdict_of(samples, "ports-web")
    table = own_inspect(own)
    assert "PUBLISHED PORTS" in table
    row = next(line for line in table.splitlines() if "0.0.0.0:18080->80/tcp" in line)
    assert row.split()[1:3] == ["ports-web", "OK"]


@pytest.mark.isolated
def test_ip_forward_off_breaks_every_forwarded_port(own: Ipv6Dockerd, web: Any) -> None:
    own.run("sysctl", "-w", "net.ipv4.ip_forward=0")
    try:
        samples = own_sample(own)
        assert ipv4_verdicts(samples) == {"tcp": "broken:ip_forward", "udp": "broken:ip_forward"}
    finally:
        own.run("sysctl", "-w", "net.ipv4.ip_forward=1")
    assert ipv4_verdicts(own_sample(own)) == {"tcp": "ok", "udp": "ok"}


def _port_accept(own: Ipv6Dockerd, web: Any) -> str:
    web.reload()
    address = next(iter(web.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    rules = own.run("iptables", "-S", "DOCKER").splitlines()
    return next(r for r in rules if f"-d {address}/32" in r and "--dport 80" in r)


@pytest.mark.isolated
def test_a_deleted_port_accept_breaks_it_at_the_forward_hop(own: Ipv6Dockerd, web: Any) -> None:
    accept = _port_accept(own, web)
    own.run("iptables", *accept.replace("-A ", "-D ", 1).split())
    try:
        samples = own_sample(own)
        assert ipv4_verdicts(samples) == {"tcp": "broken:forward", "udp": "ok"}
        row = next(line for line in own_inspect(own).splitlines() if "0.0.0.0:18080->80" in line)
        assert "BROKEN" in row and "forward: no ACCEPT in DOCKER" in row
    finally:
        own.run("iptables", *accept.split())
    assert ipv4_verdicts(own_sample(own)) == {"tcp": "ok", "udp": "ok"}


@pytest.mark.isolated
def test_a_docker_user_drop_shadows_the_port(own: Ipv6Dockerd, web: Any) -> None:
    drop = ["DOCKER-USER", "-p", "tcp", "--dport", "80", "-j", "DROP"]
    own.run("iptables", "-I", *drop)
    try:
        samples = own_sample(own)
        assert ipv4_verdicts(samples) == {"tcp": "broken:forward", "udp": "ok"}
        row = next(line for line in own_inspect(own).splitlines() if "0.0.0.0:18080->80" in line)
        assert "DOCKER-USER" in row
    finally:
        own.run("iptables", "-D", *drop)
    assert ipv4_verdicts(own_sample(own)) == {"tcp": "ok", "udp": "ok"}


RUN = 15.0  # the Driver's interval: a refresh of k x RUN is k runs


def _own_container(own: Ipv6Dockerd, name: str, command: str) -> Any:
    client = own.client()
    try:
        return client.containers.run(
            "dhe-test/busybox:latest",
            ["sh", "-c", command],
            name=f"dhe-li-{name}",
            detach=True,
            ports={"80/tcp": None},
        )
    finally:
        client.close()


def _listening(container: Any) -> bool:
    return 80 in {s.port for s in ss_sockets(pid_of(container))}


def _tcp_verdict(samples: list[Sample], container: Any) -> str:
    return verdict_of(samples, container.name, host_address="0.0.0.0")["0.0.0.0"]


@pytest.mark.isolated
def test_a_listener_closed_in_silence_is_reported_within_the_refresh(own: Ipv6Dockerd) -> None:
    """busybox nc closes its listening socket once it has taken a connection, and lives on:
    no process changes, so only the cadence reads the container again."""
    c = _own_container(own, "cadence", "sleep 3600 | nc -l -p 80")
    client: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: _listening(c), timeout=30)
        with Driver(own, refresh=3 * RUN) as driver:
            assert _tcp_verdict(driver.sample(), c) == "ok"
            c.reload()
            address = next(iter(c.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
            # One connection, held open, from the dockerd's namespace to the container.
            client = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{own.netns}", sys.executable, "-c", HOLD, address],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert client.stdout is not None and client.stdout.readline() == b"connected\n"
            wait_for(lambda: not _listening(c), timeout=30)
            processes = _processes(pid_of(c))
            verdicts = [_tcp_verdict(driver.sample(), c) for _ in range(3)]
            assert _processes(pid_of(c)) == processes  # nothing but the cadence to go by
            # Read again within 3 runs, confirmed by that run's second look, and kept so.
            assert verdicts[-1] == "broken:listener", verdicts
            broken_from = verdicts.index("broken:listener")
            assert set(verdicts[broken_from:]) == {"broken:listener"}, verdicts
    finally:
        if client is not None:
            client.kill()
            client.wait(30)
        c.remove(force=True)


HOLD = """
import socket, sys
held = socket.create_connection((sys.argv[1], 80), timeout=10)
print("connected", flush=True)
sys.stdin.read()
"""


def _processes(pid1: int) -> set[tuple[int, str]]:
    """PID 1 and its children, by pid and start time (from the host's /proc)."""
    return {
        (pid, fields[19])
        for pid, _, fields in host_processes()
        if pid == pid1 or int(fields[1]) == pid1
    }


@pytest.mark.isolated
def test_a_new_or_killed_process_reads_the_listeners_at_the_next_run(own: Ipv6Dockerd) -> None:
    """With a refresh no test outlives, a container is read again only for a change: a process
    started in it (through the Engine API's exec, as `docker exec` does), or one killed."""
    c = _own_container(own, "exec", "exec sleep 3600")
    try:
        with Driver(own, refresh=1e6) as driver:
            assert _tcp_verdict(driver.sample(), c) == "broken:listener"
            assert _tcp_verdict(driver.sample(), c) == "broken:listener"
            code, output = c.exec_run(["httpd", "-p", "80"])  # a daemon: outlives the exec
            assert code == 0, output
            wait_for(lambda: _listening(c), timeout=30)
            assert _tcp_verdict(driver.sample(), c) == "ok"
            assert _tcp_verdict(driver.sample(), c) == "ok"
            kill_children(pid_of(c), "httpd")  # reparented to PID 1 when it went to background
            wait_for(lambda: not _listening(c), timeout=30)
            assert _tcp_verdict(driver.sample(), c) == "broken:listener"
    finally:
        c.remove(force=True)


def test_listeners_are_read_without_any_privilege(containers: Containers) -> None:
    """/proc/PID/net of a container's PID 1 is readable by nobody with no capabilities (the
    fault matrix's least case): the listener hop needs no privilege."""
    c = containers.run("unprivileged", HTTPD, ports={"80/tcp": None})
    wait_for(lambda: 80 in {s.port for s in ss_sockets(pid_of(c))}, timeout=30)
    code = (
        "import sys; from exporter.readers.proc_net import bound_sockets; "
        "print(bound_sockets('/proc', int(sys.argv[1]), 'tcp', [80]))"
    )
    out = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            sys.executable,
            "-c",
            code,
            str(pid_of(c)),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert "port=80" in out, out
