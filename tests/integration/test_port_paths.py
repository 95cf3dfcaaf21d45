"""Every hop of a published port's path proven by real traffic (docs/port-paths.md): on a dockerd
of the test's own in a network namespace of its own, with a client namespace joined to it by a
veth ("another machine"), clients in the dockerd's namespace ("the host") and in the
container's (hairpin). For each hop on a path: break it, and the connection fails AND the
verdict names that hop. For what is off the path (the network's MASQUERADE for an inbound
connection; the DNAT of a 127.0.0.1 binding docker-proxy serves, and the FORWARD ACCEPT; an
ACCEPT under FORWARD policy ACCEPT): break it, and the connection succeeds AND the verdict is
ok. A DNAT missing while docker-proxy runs: the connection succeeds (through docker-proxy) and
the verdict is unknown (filter INPUT is not read), never broken.

Traffic goes only between these namespaces, in bounded loops (a few tries with a timeout each:
a failure to connect, not a duration, is what is asserted)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Sample, kill_children, select, wait_for
from tests.integration.test_ports_on_engine import Driver, pid_of, ss_sockets, verdict_of
from tests.own_dockerd import Ipv6Dockerd, ipv6_dockerd

# isolated (tests/conftest.py): every dockerd, container, rule and client is in network
# namespaces of its own.
pytestmark = [pytest.mark.integration, pytest.mark.isolated]

# The dockerd's namespace and the client's, joined by a veth: addresses of the benchmarking
# range, on links that exist only between these two namespaces.
HOST_ADDRESS, CLIENT_ADDRESS = "198.18.0.1", "198.18.0.2"
# Unique local addresses, on the same link, never routed off it.
HOST_ADDRESS6, CLIENT_ADDRESS6 = "fd00:d4f::1", "fd00:d4f::2"
HOST_LINK, CLIENT_LINK = "pp-h0", "pp-c0"

# Connects, sends a request and wants an HTTP answer (busybox httpd's), at most `tries` times.
CLIENT = """
import socket, sys
host, port, tries, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
error = None
for _ in range(tries):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            if s.recv(16).startswith(b"HTTP/"):
                print("connected")
                sys.exit(0)
            error = "no HTTP answer"
    except OSError as exc:
        error = repr(exc)
print(error)
sys.exit(1)
"""


class Clients:
    """Where connections come from: another machine (the client namespace), the host (the
    dockerd's namespace), a container (its own namespace, entered by PID)."""

    def __init__(self, own: Ipv6Dockerd, client_netns: str) -> None:
        self.own = own
        self.client_netns = client_netns

    def _connect(self, netns: str, host: str, port: int, tries: int, timeout: float) -> bool:
        done = subprocess.run(
            [
                "nsenter",
                f"--net={netns}",
                sys.executable,
                "-c",
                CLIENT,
                host,
                str(port),
                str(tries),
                str(timeout),
            ],
            capture_output=True,
            text=True,
            timeout=tries * timeout * 3 + 60,
            check=False,
        )
        return done.returncode == 0

    def remote(self, port: int, expect: bool) -> bool:
        return self._expect(f"/run/netns/{self.client_netns}", HOST_ADDRESS, port, expect)

    def remote6(self, port: int, expect: bool) -> bool:
        return self._expect(f"/run/netns/{self.client_netns}", HOST_ADDRESS6, port, expect)

    def host(self, address: str, port: int, expect: bool) -> bool:
        return self._expect(f"/run/netns/{self.own.netns}", address, port, expect)

    def container(self, container: Any, port: int, expect: bool) -> bool:
        return self._expect(f"/proc/{pid_of(container)}/ns/net", HOST_ADDRESS, port, expect)

    def _expect(self, netns: str, host: str, port: int, expect: bool) -> bool:
        """Expecting success: up to 10 tries of 5 s, stopping at the first that connects.
        Expecting failure: 2 tries of 3 s, both failing."""
        tries, timeout = (10, 5.0) if expect else (2, 3.0)
        return self._connect(netns, host, port, tries, timeout)


@contextlib.contextmanager
def client_namespace(own: Ipv6Dockerd) -> Iterator[Clients]:
    name = f"{own.netns}-cl"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        ns, peer = own.netns, name
        for step in (
            f"-n {ns} link add {HOST_LINK} type veth peer name {CLIENT_LINK} netns {peer}",
            f"-n {ns} addr add {HOST_ADDRESS}/30 dev {HOST_LINK}",
            f"-n {ns} link set {HOST_LINK} up",
            f"-n {peer} addr add {CLIENT_ADDRESS}/30 dev {CLIENT_LINK}",
            f"-n {peer} link set {CLIENT_LINK} up",
            f"-n {peer} link set lo up",
            f"-n {ns} addr add {HOST_ADDRESS6}/64 dev {HOST_LINK} nodad",
            f"-n {peer} addr add {CLIENT_ADDRESS6}/64 dev {CLIENT_LINK} nodad",
        ):
            subprocess.run(["ip", *step.split()], check=True, timeout=30)
        yield Clients(own, name)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def start_web(own: Ipv6Dockerd, name: str, ports: dict[str, Any]) -> Any:
    """busybox httpd as PID 1's child (PID 1 a sleep): the listener can be killed alone."""
    client = own.client()
    try:
        container = client.containers.run(
            "dhe-test/busybox:latest",
            ["sh", "-c", "httpd -p 80; exec sleep 3600"],
            name=name,
            detach=True,
            ports=ports,
        )
    finally:
        client.close()
    wait_for(lambda: 80 in {s.port for s in ss_sockets(pid_of(container))}, timeout=30)
    return container


def restart(container: Any) -> None:
    """Everything dockerd set up for the container anew: its proxies, rules, veth, listener."""
    container.restart(timeout=1)
    wait_for(lambda: 80 in {s.port for s in ss_sockets(pid_of(container))}, timeout=30)


def verdicts(own: Ipv6Dockerd, container: Any) -> dict[str, str]:
    """host address -> ok, broken:<hop> or unknown:<hop>, from one sample (nat and ports read
    twice within it when something looks broken)."""
    with Driver(own, refresh=0.001) as driver:
        samples = driver.sample()
    return verdict_of(samples, container.name, protocol="tcp")


def sample(own: Ipv6Dockerd) -> list[Sample]:
    with Driver(own, refresh=0.001) as driver:
        return driver.sample()


def own_rule(own: Ipv6Dockerd, table: str, chain: str, *marks: str) -> list[str]:
    """The one rule of the chain whose `-S` text holds every mark, as arguments to -A/-D."""
    rules = [
        line
        for line in own.run("iptables", "-t", table, "-S", chain).splitlines()
        if line.startswith("-A ") and all(m in line for m in marks)
    ]
    assert len(rules) == 1, rules
    return rules[0].split()[1:]


@contextlib.contextmanager
def deleted(own: Ipv6Dockerd, table: str, rule: list[str]) -> Iterator[None]:
    own.run("iptables", "-t", table, "-D", *rule)
    try:
        yield
    finally:
        own.run("iptables", "-t", table, "-A", *rule)


def host_veth(own: Ipv6Dockerd, container: Any) -> str:
    """The container's host veth in the dockerd's namespace, by the index its eth0's iflink
    names (read through /proc/PID/root: no exec)."""
    index = Path(f"/proc/{pid_of(container)}/root/sys/class/net/eth0/iflink").read_text().strip()
    for line in own.run("ip", "-o", "link", "show").splitlines():
        number, name = line.split(":")[:2]
        if number.strip() == index:
            return name.strip().split("@")[0]
    raise AssertionError(f"no link {index} in {own.netns}")


def kill_proxy(own: Ipv6Dockerd, host_ip: str, host_port: int) -> None:
    """The docker-proxy our dockerd started for that binding (its child: nobody else's)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        words = [a.decode() for a in argv]
        if (
            ppid == own.process.pid
            and Path(words[0]).name == "docker-proxy"
            and host_ip in words
            and str(host_port) in words
        ):
            os.kill(int(entry.name), signal.SIGKILL)
            return
    raise AssertionError(f"no docker-proxy of ours for {host_ip}:{host_port}")


def kill_listener(container: Any) -> None:
    pid1 = pid_of(container)
    kill_children(pid1, "httpd")
    wait_for(lambda: 80 not in {s.port for s in ss_sockets(pid1)}, timeout=30)


# -- userland-proxy on (the default) -----------------------------------------------------------

ANY_PORT, LOOPBACK_PORT, ADDRESS_PORT, IPV6_PORT = 18180, 18181, 18182, 18183


def both(forwarded: str, loopback: str, ipv6: str | None = None) -> dict[str, str]:
    """The verdicts expected of the 0.0.0.0 and the 198.18.0.1 binding (the same paths), of
    the 127.0.0.1 one, and of the [::] one (ip6tables' DNAT to the container's IPv6 address:
    as the IPv4 forwarded ones unless told)."""
    return {
        "0.0.0.0": forwarded,
        HOST_ADDRESS: forwarded,
        "127.0.0.1": loopback,
        "::": forwarded if ipv6 is None else ipv6,
    }


@pytest.fixture(scope="class")
def proxied() -> Iterator[tuple[Ipv6Dockerd, Clients, Any]]:
    with ipv6_dockerd() as own, client_namespace(own) as clients:
        web = start_web(
            own,
            "pp-web",
            {
                "80/tcp": [
                    ("0.0.0.0", ANY_PORT),
                    ("127.0.0.1", LOOPBACK_PORT),
                    (HOST_ADDRESS, ADDRESS_PORT),
                    ("::", IPV6_PORT),
                ]
            },
        )
        yield own, clients, web


class TestUserlandProxyOn:
    def test_the_whole_paths_connect_and_are_ok(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        assert clients.remote(ANY_PORT, expect=True)
        assert clients.remote(ADDRESS_PORT, expect=True)
        assert clients.remote6(IPV6_PORT, expect=True)
        assert clients.host("127.0.0.1", LOOPBACK_PORT, expect=True)
        assert clients.host("127.0.0.1", ANY_PORT, expect=True)  # docker-proxy's
        assert verdicts(own, web) == both("ok", "ok")

    def test_the_network_masquerade_is_off_the_inbound_path(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        rule = own_rule(own, "nat", "POSTROUTING", "! -o", "-j MASQUERADE")
        subnet = rule[rule.index("-s") + 1]
        with deleted(own, "nat", rule):
            assert clients.remote(ANY_PORT, expect=True)
            samples = sample(own)
            found = verdict_of(samples, web.name, protocol="tcp")
            assert found == both("ok", "ok")
            # ... while nat says the network's outgoing traffic lacks it.
            missing = select(samples, "docker_host_nat_masquerade_missing", subnet=subnet)
            assert [s.value for s in missing] == [1]

    def test_a_loopback_binding_needs_neither_dnat_nor_forward(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        dnat = own_rule(own, "nat", "DOCKER", "-d 127.0.0.1/32", f"--dport {LOOPBACK_PORT}")
        accept = own_rule(own, "filter", "DOCKER", "--dport 80", "-j ACCEPT")
        with deleted(own, "nat", dnat), deleted(own, "filter", accept):
            assert clients.host("127.0.0.1", LOOPBACK_PORT, expect=True)
            assert not clients.remote(ANY_PORT, expect=False)  # the ACCEPT is the 0.0.0.0 one's
            assert verdicts(own, web) == both("broken:forward", "ok", ipv6="ok")

    def test_a_missing_accept_under_forward_policy_accept_is_no_break(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        """A host that had forwarding on before dockerd keeps FORWARD's policy ACCEPT: there a
        port without its ACCEPT is forwarded all the same."""
        own, clients, web = proxied
        accept = own_rule(own, "filter", "DOCKER", "--dport 80", "-j ACCEPT")
        own.run("iptables", "-P", "FORWARD", "ACCEPT")
        try:
            with deleted(own, "filter", accept):
                assert clients.remote(ANY_PORT, expect=True)
                assert verdicts(own, web) == both("ok", "ok")
        finally:
            own.run("iptables", "-P", "FORWARD", "DROP")

    def test_a_missing_dnat_leaves_the_port_to_docker_proxy_unknown_never_broken(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        dnat = own_rule(own, "nat", "DOCKER", f"--dport {ANY_PORT}", "-j DNAT")
        with deleted(own, "nat", dnat):
            assert clients.remote(ANY_PORT, expect=True)
            # Through filter INPUT, which is not read (a host whose INPUT drops would refuse
            # it): unknown, never broken, and never ok.
            expected = both("ok", "ok") | {"0.0.0.0": "unknown:dnat"}
            assert verdicts(own, web) == expected

    def test_ip_forward_off_breaks_the_forwarded_binding_only(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        own.run("sysctl", "-qw", "net.ipv4.ip_forward=0")
        try:
            assert not clients.remote(ANY_PORT, expect=False)
            assert not clients.remote(ADDRESS_PORT, expect=False)
            assert clients.host("127.0.0.1", LOOPBACK_PORT, expect=True)
            assert verdicts(own, web) == both("broken:ip_forward", "ok", ipv6="ok")
        finally:
            own.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        assert clients.remote(ANY_PORT, expect=True)

    def test_ipv6_forwarding_off_breaks_the_ipv6_binding_only(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        own.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=0")
        try:
            assert not clients.remote6(IPV6_PORT, expect=False)
            assert clients.remote(ANY_PORT, expect=True)
            assert verdicts(own, web) == both("ok", "ok", ipv6="broken:ip_forward")
        finally:
            own.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        assert clients.remote6(IPV6_PORT, expect=True)

    def test_a_docker_user_drop_breaks_it_at_forward(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        drop = ["DOCKER-USER", "-p", "tcp", "--dport", "80", "-j", "DROP"]
        own.run("iptables", "-I", *drop)
        try:
            assert not clients.remote(ANY_PORT, expect=False)
            assert clients.host("127.0.0.1", LOOPBACK_PORT, expect=True)
            assert verdicts(own, web) == both("broken:forward", "ok", ipv6="ok")
        finally:
            own.run("iptables", "-D", *drop)

    def test_a_veth_down_breaks_every_binding(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        veth = host_veth(own, web)
        own.run("ip", "link", "set", veth, "down")
        try:
            assert not clients.remote(ANY_PORT, expect=False)
            assert not clients.host("127.0.0.1", LOOPBACK_PORT, expect=False)
            assert verdicts(own, web) == both("broken:veth", "broken:veth")
        finally:
            own.run("ip", "link", "set", veth, "up")
        assert clients.remote(ANY_PORT, expect=True)

    def test_a_disabled_bridge_port_breaks_every_binding(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        veth = host_veth(own, web)
        own.run("bridge", "link", "set", "dev", veth, "state", "0")
        try:
            assert not clients.remote(ANY_PORT, expect=False)
            assert not clients.host("127.0.0.1", LOOPBACK_PORT, expect=False)
            found = verdicts(own, web)
            assert found == both("broken:bridge_port", "broken:bridge_port")
        finally:
            own.run("bridge", "link", "set", "dev", veth, "state", "3")
        assert clients.remote(ANY_PORT, expect=True)

    def test_a_dead_docker_proxy_breaks_the_host_s_loopback_connections(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        kill_proxy(own, "127.0.0.1", LOOPBACK_PORT)
        kill_proxy(own, "0.0.0.0", ANY_PORT)
        try:
            assert not clients.host("127.0.0.1", LOOPBACK_PORT, expect=False)
            # The 0.0.0.0 binding: the host's connections to 127.0.0.1 were docker-proxy's,
            # another machine's are DNAT'ed and still connect.
            assert not clients.host("127.0.0.1", ANY_PORT, expect=False)
            assert clients.remote(ANY_PORT, expect=True)
            expected = both("ok", "broken:proxy") | {"0.0.0.0": "broken:proxy"}
            assert verdicts(own, web) == expected
        finally:
            restart(web)
        assert clients.host("127.0.0.1", LOOPBACK_PORT, expect=True)
        assert clients.host("127.0.0.1", ANY_PORT, expect=True)

    def test_no_listener_breaks_every_binding(
        self, proxied: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = proxied
        kill_listener(web)
        try:
            assert not clients.remote(ANY_PORT, expect=False)
            assert not clients.host("127.0.0.1", LOOPBACK_PORT, expect=False)
            found = verdicts(own, web)
            assert found == both("broken:listener", "broken:listener")
        finally:
            restart(web)
        assert clients.remote(ANY_PORT, expect=True)


# -- userland-proxy off: hairpin mode ----------------------------------------------------------

HAIRPIN_PORT = 18280


@pytest.fixture(scope="class")
def hairpin() -> Iterator[tuple[Ipv6Dockerd, Clients, Any]]:
    with ipv6_dockerd(flags=("--userland-proxy=false",)) as own, client_namespace(own) as clients:
        web = start_web(own, "pp-hairpin", {"80/tcp": ("0.0.0.0", HAIRPIN_PORT)})
        yield own, clients, web


class TestUserlandProxyOff:
    def test_the_whole_paths_connect_and_are_ok(
        self, hairpin: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = hairpin
        assert clients.remote(HAIRPIN_PORT, expect=True)
        assert clients.container(web, HAIRPIN_PORT, expect=True)  # its own port, through the host
        assert clients.host("127.0.0.1", HAIRPIN_PORT, expect=True)  # OUTPUT DNAT, no proxy
        assert verdicts(own, web) == {"0.0.0.0": "ok"}

    def test_a_missing_dnat_breaks_it_at_dnat(
        self, hairpin: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = hairpin
        dnat = own_rule(own, "nat", "DOCKER", f"--dport {HAIRPIN_PORT}", "-j DNAT")
        with deleted(own, "nat", dnat):
            assert not clients.remote(HAIRPIN_PORT, expect=False)
            assert not clients.host("127.0.0.1", HAIRPIN_PORT, expect=False)
            assert verdicts(own, web) == {"0.0.0.0": "broken:dnat"}
        assert clients.remote(HAIRPIN_PORT, expect=True)

    def test_a_missing_per_port_masquerade_breaks_it_at_hairpin_masquerade(
        self, hairpin: tuple[Ipv6Dockerd, Clients, Any]
    ) -> None:
        own, clients, web = hairpin
        web.reload()
        address = next(iter(web.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        rule = own_rule(
            own, "nat", "POSTROUTING", f"-s {address}/32", f"-d {address}/32", "-j MASQUERADE"
        )
        with deleted(own, "nat", rule):
            assert not clients.container(web, HAIRPIN_PORT, expect=False)
            assert clients.remote(HAIRPIN_PORT, expect=True)
            assert verdicts(own, web) == {"0.0.0.0": "broken:hairpin_masquerade"}
        assert clients.container(web, HAIRPIN_PORT, expect=True)
