"""Docker's filter rules judged on real engines (issue 15, part 1): the host's dockerd with a
container of ours publishing a port, complete; and a dockerd of the tests' own, in a network
namespace of its own (tests/own_dockerd.py: iptables and ip6tables on), in both firewall
backends, whose rules the tests break the ways hosts break them: a per-port ACCEPT deleted, a
DROP in DOCKER-USER, the filter table flushed as a firewall reload flushes it (then dockerd
restarted to write its rules again). The exporter runs in that namespace
(tests/filter_probe.py, the firewall collector's own source); iptables prints what is there."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.collectors.firewall.facts import FirewallFacts
from exporter.collectors.firewall.report import filter_sections
from exporter.settings import Settings
from tests.conftest import unavailable
from tests.helpers import sample_once, select, value, wait_for
from tests.own_dockerd import Ipv6Dockerd, ipv6_dockerd, own_dockerd

pytestmark = pytest.mark.integration

SUBNET4, SUBNET6 = "172.30.78.0/24", "fd00:d50::/64"
PORT = 18480  # published as PORT -> 80/tcp


@pytest.fixture
def host_web(engine: Any) -> Iterator[Any]:
    """A container of ours on the host's default bridge publishing 80/tcp. Without the test
    label: other test sessions sharing this engine remove labelled containers when they end."""
    web = engine.containers.run(
        "dhe-test/busybox:latest", "sleep 3600", name=f"dhf-{uuid.uuid4().hex[:8]}",
        detach=True, ports={"80/tcp": None},
    )  # fmt: skip
    try:
        web.reload()
        yield web
    finally:
        web.remove(force=True)


def test_the_host_dockerds_filter_rules_are_complete(host_web: Any) -> None:
    web = host_web
    address = web.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    _, samples = sample_once(Settings(collectors=("firewall",)))
    assert value(samples, "docker_host_collector_success", collector="firewall") == 1
    assert value(samples, "docker_host_filter_judged", family="ipv4") == 1
    missing = select(samples, "docker_host_filter_rule_missing", family="ipv4")
    assert [s.labels for s in missing if s.value] == []
    ours = {s.labels["rule"] for s in missing if s.labels["container"] == web.name}
    assert ours == {"port_accept:tcp/80"}
    networks = {s.labels["network"] for s in missing if s.labels["rule"] == "established"}
    assert "bridge" in networks
    # iptables agrees that the port's ACCEPT is there.
    rules = subprocess.run(
        ["iptables", "-S", "DOCKER"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert re.search(
        rf"-A DOCKER -d {address}/32 ! -i docker0 -o docker0 -p tcp .*--dport 80", rules
    )
    assert value(samples, "docker_host_ip_forward", family="ipv4") == 1


@pytest.fixture(scope="module", params=["nft", "legacy"])
def own(request: pytest.FixtureRequest, engine: Any) -> Iterator[tuple[Ipv6Dockerd, str, Any]]:
    """The dockerd in its namespace, a dual-stack network, and a container publishing PORT
    (restarted with dockerd)."""
    firewall = str(request.param)
    if firewall == "legacy" and not shutil.which("iptables-legacy"):
        unavailable("iptables-legacy not installed")
    if not shutil.which("nsenter"):
        unavailable("nsenter not installed (util-linux)")
    with ipv6_dockerd(firewall) as dockerd:
        client = dockerd.client()
        try:
            network = client.networks.create(
                "dhfnet", driver="bridge", enable_ipv6=True,
                ipam={"Config": [{"Subnet": SUBNET4}, {"Subnet": SUBNET6}]},
            )  # fmt: skip
            web = client.containers.run(
                "dhe-test/busybox:latest", "sleep 3600", name="fwweb", detach=True,
                network=network.name, ports={"80/tcp": PORT},
                restart_policy={"Name": "always"},
            )  # fmt: skip
            web.reload()
            yield dockerd, f"br-{network.id[:12]}", web
        finally:
            client.close()


def addresses(web: Any) -> tuple[str, str]:
    settings = web.attrs["NetworkSettings"]["Networks"]["dhfnet"]
    return settings["IPAddress"], settings["GlobalIPv6Address"]


def judged(dockerd: Ipv6Dockerd, bridge: str, web: Any) -> dict[str, Any]:
    """One reading of the firewall collector in the dockerd's namespace, with the forward verdicts
    of the container's port in both families."""
    v4, v6 = addresses(web)
    ports = [f"ipv4,{v4},80,tcp,{bridge}", f"ipv6,{v6},80,tcp,{bridge}"]
    found: dict[str, Any] = json.loads(
        dockerd.run(sys.executable, "-m", "tests.filter_probe", "judged", dockerd.host, *ports)
    )
    found["v4"], found["v6"] = (found["verdicts"][p] for p in ports)
    return found


def port_accept(bridge: str, address: str, family: str) -> list[str]:
    width = 128 if family == "ipv6" else 32
    return [
        "DOCKER", "-d", f"{address}/{width}", "!", "-i", bridge, "-o", bridge, "-p", "tcp",
        "-m", "tcp", "--dport", "80", "-j", "ACCEPT",
    ]  # fmt: skip


# The tests on `own` are isolated (tests/conftest.py): its dockerd, rules and clients are in
# network namespaces of its own; the host's dockerd's tests stay in the host group.
@pytest.mark.isolated
def test_own_dockerds_rules_are_complete_in_both_families(
    own: tuple[Ipv6Dockerd, str, Any],
) -> None:
    dockerd, bridge, web = own
    found = judged(dockerd, bridge, web)
    assert found["managed"] == [True, "daemon.json"]
    assert found["missing"] == []
    expected = {tuple(e) for e in found["expected"]}
    for family in ("ipv4", "ipv6"):
        assert (family, "dhfnet", "fwweb", "port_accept:tcp/80") in expected
        assert (family, "dhfnet", "", "jump_docker") in expected
    assert found["v4"] == {"state": "ok", "reason": "accepted; DOCKER holds the port's ACCEPT"}
    assert found["v6"]["state"] == "ok"


@pytest.mark.isolated
def test_deleted_port_accept_is_missing_and_breaks_the_port_until_restored(
    own: tuple[Ipv6Dockerd, str, Any],
) -> None:
    dockerd, bridge, web = own
    v4, v6 = addresses(web)
    for family, tool, address in (("ipv4", "iptables", v4), ("ipv6", "ip6tables", v6)):
        rule = port_accept(bridge, address, family)
        dockerd.run(tool, "-D", *rule)
        try:
            found = judged(dockerd, bridge, web)
            assert found["missing"] == [[family, "dhfnet", "fwweb", "port_accept:tcp/80"]]
            verdict = found["v6" if family == "ipv6" else "v4"]
            assert verdict == {
                "state": "broken",
                "reason": f"no ACCEPT in DOCKER for {address} tcp/80",
            }
        finally:
            dockerd.run(tool, "-I", *rule[:1], "1", *rule[1:])
        found = judged(dockerd, bridge, web)
        assert found["missing"] == []
        assert found["v4"]["state"] == found["v6"]["state"] == "ok"


@pytest.mark.isolated
def test_a_drop_in_docker_user_shadows_the_port_until_removed(
    own: tuple[Ipv6Dockerd, str, Any],
) -> None:
    dockerd, bridge, web = own
    drop = ["DOCKER-USER", "-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "DROP"]
    dockerd.run("iptables", "-I", *drop)
    try:
        found = judged(dockerd, bridge, web)
        assert found["v4"] == {
            "state": "broken",
            "reason": "shadowed by DOCKER-USER rule 1: -p tcp --dport 80 -j DROP",
        }
        assert found["v6"]["state"] == "ok"  # ip6tables' DOCKER-USER holds no such rule
        assert found["missing"] == []  # Docker's own rules are all there
    finally:
        dockerd.run("iptables", "-D", *drop)
    assert judged(dockerd, bridge, web)["v4"]["state"] == "ok"


def _rules_now(dockerd: Ipv6Dockerd) -> str:
    """Every rule of both families and both backends, without counters."""
    found = [dockerd.run(tool, "-S") for tool in ("iptables", "ip6tables")]
    found += [dockerd.run(tool, "-t", "nat", "-S") for tool in ("iptables", "ip6tables")]
    if dockerd.firewall == "nft":
        ruleset = dockerd.run("nft", "list", "ruleset")
        found.append(re.sub(r"counter packets \d+ bytes \d+", "counter", ruleset))
    return "\n".join(found)


@pytest.mark.isolated
def test_the_exporter_changes_no_rule(own: tuple[Ipv6Dockerd, str, Any]) -> None:
    dockerd, bridge, web = own
    before = _rules_now(dockerd)
    dockerd.sample_nat()
    judged(dockerd, bridge, web)
    assert _rules_now(dockerd) == before


@pytest.mark.isolated
def test_a_firewall_reload_that_flushes_the_filter_table_is_missing_for_every_network(
    own: tuple[Ipv6Dockerd, str, Any],
) -> None:
    dockerd, bridge, web = own
    for tool in ("iptables", "ip6tables"):  # as firewalld's reload flushes a table
        dockerd.run(tool, "-F")
        dockerd.run(tool, "-X")
        dockerd.run(tool, "-P", "FORWARD", "ACCEPT")
    try:
        found = judged(dockerd, bridge, web)
        missing = {tuple(m) for m in found["missing"]}
        for family in ("ipv4", "ipv6"):
            for network in ("dhfnet", "bridge"):
                for rule in ("established", "jump_docker", "outgoing"):
                    assert (family, network, "", rule) in missing
            assert (family, "dhfnet", "fwweb", "port_accept:tcp/80") in missing
        assert ("ipv4", "", "", "jump_docker_user") in missing  # ip6tables' only from Docker 23
        # FORWARD policy ACCEPT: the port's packets are forwarded without its ACCEPT.
        assert found["v4"]["state"] == "ok"
        assert found["managed"] == [True, "daemon.json"]  # no chain left, still Docker's
    finally:
        dockerd.restart()
    client = dockerd.client()
    try:
        wait_for(lambda: client.containers.get("fwweb").status == "running", timeout=60)
        web = client.containers.get("fwweb")  # its addresses as the restarted dockerd gave them
    finally:
        client.close()
    wait_for(lambda: judged(dockerd, bridge, web)["missing"] == [], timeout=60, interval=1)
    assert judged(dockerd, bridge, web)["v4"]["state"] == "ok"


def test_a_dockerd_that_manages_no_firewall_is_not_judged_and_says_so(engine: Any) -> None:
    """tests/own_dockerd.py's plain dockerd runs with --iptables=false, beside the host's: the
    host's chains are there, but not this dockerd's business."""
    with own_dockerd() as dockerd:
        snapshot, samples = sample_once(
            Settings(collectors=("firewall",), docker_host=dockerd.host)
        )
        assert value(samples, "docker_host_collector_success", collector="firewall") == 1
        assert value(samples, "docker_host_docker_firewall_managed", said_by="flag") == 0
        assert value(samples, "docker_host_filter_judged", family="ipv4") == 0
        assert select(samples, "docker_host_filter_rule_missing") == []
        facts = snapshot.current("firewall", FirewallFacts)
        assert facts is not None
        text = "\n".join(filter_sections(facts))
        assert "Docker manages NO firewall (its --iptables flag): nothing judged" in text
        assert "MISSING FILTER RULES\n(not judged)" in text


# -- a port restricted to some sources, with real traffic -------------------------------------

RESTRICTED_PORT = 18481
CLIENTS = {"allowed": ("10.77.1.1", "10.77.1.2"), "dropped": ("10.77.2.1", "10.77.2.2")}
CONNECT = """
import socket, sys
for _ in range(3):  # a bounded number of tries, each with a timeout
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            print("answered" if s.recv(64).startswith(b"HTTP/") else "no answer")
            break
    except OSError:
        continue
else:
    print("dropped")
"""


@pytest.fixture
def clients(own: tuple[Ipv6Dockerd, str, Any]) -> Iterator[dict[str, str]]:
    """Two client namespaces of the test's own, each on a veth into the dockerd's namespace
    (its address there is the port's host address for that client): name -> namespace."""
    dockerd = own[0]
    made: dict[str, str] = {}
    try:
        for n, (name, (gateway, address)) in enumerate(CLIENTS.items()):
            netns = f"dhfc-{uuid.uuid4().hex[:6]}"
            subprocess.run(["ip", "netns", "add", netns], check=True, timeout=30)
            made[name] = netns
            link = f"dhfc{n}"
            for args in (
                ["-n", dockerd.netns, "link", "add", link, "type", "veth", "peer",
                 "name", "eth0", "netns", netns],
                ["-n", dockerd.netns, "addr", "add", f"{gateway}/24", "dev", link],
                ["-n", dockerd.netns, "link", "set", link, "up"],
                ["-n", netns, "addr", "add", f"{address}/24", "dev", "eth0"],
                ["-n", netns, "link", "set", "eth0", "up"],
                ["-n", netns, "link", "set", "lo", "up"],
                ["-n", netns, "route", "add", "default", "via", gateway],
            ):  # fmt: skip
                subprocess.run(["ip", *args], check=True, timeout=30)
        yield made
    finally:
        for netns in made.values():  # takes its end of the veth, and so the other
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def connect(netns: str, address: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", CONNECT, address,
         str(RESTRICTED_PORT)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip


@pytest.mark.isolated
def test_a_port_cut_for_one_source_is_restricted_naming_it_and_traffic_agrees(
    own: tuple[Ipv6Dockerd, str, Any], clients: dict[str, str]
) -> None:
    """issue 22: a DOCKER-USER DROP restricted to one client's address left the port ok. Two
    clients in namespaces of their own reach the port through the dockerd's namespace: the one
    the rule names is dropped, the other answered, and the verdict says restricted, naming the
    rule and the dropped source."""
    dockerd, _, _ = own
    client = dockerd.client()
    server = client.containers.run(
        "dhe-test/busybox:latest", ["httpd", "-f", "-p", "80"], name="fwrestricted",
        detach=True, network="dhfnet", ports={"80/tcp": RESTRICTED_PORT},
    )  # fmt: skip
    try:
        server.reload()
        address = server.attrs["NetworkSettings"]["Networks"]["dhfnet"]["IPAddress"]
        allowed, dropped = CLIENTS["allowed"], CLIENTS["dropped"]
        wait_for(lambda: connect(clients["allowed"], allowed[0]) == "answered", timeout=60)
        assert connect(clients["dropped"], dropped[0]) == "answered"  # before the rule
        rule = ["DOCKER-USER", "-s", f"{dropped[1]}/32", "-d", f"{address}/32", "-p", "tcp",
                "-m", "tcp", "--dport", "80", "-j", "DROP"]  # fmt: skip
        dockerd.run("iptables", "-I", *rule)
        try:
            assert connect(clients["dropped"], dropped[0]) == "dropped"
            assert connect(clients["allowed"], allowed[0]) == "answered"
            samples = dockerd.sample("nat", "firewall", "network", "daemon", "ports")
            labels = {"container": "fwrestricted", "host_port": str(RESTRICTED_PORT)}
            cut = select(samples, "docker_host_published_port_restricted", **labels)
            assert [
                (s.labels["host_address"], s.labels["hop"], s.labels["sources"]) for s in cut
            ] == [("0.0.0.0", "forward", f"from {dropped[1]}/32")]
            assert cut[0].labels["rule"].endswith("filter/DOCKER-USER rule 1")
            assert value(samples, "docker_host_published_port_ok", host_address="0.0.0.0",
                         **labels) == 0  # fmt: skip
            # The IPv4 binding's path is whole but for the rule (the IPv6 one is another path).
            assert not select(
                samples, "docker_host_published_port_broken", host_address="0.0.0.0", **labels
            )
            table = dockerd.run(
                sys.executable, "-m", "exporter", "inspect", "--docker.host", dockerd.host
            )
            row = next(line for line in table.splitlines()
                       if f"0.0.0.0:{RESTRICTED_PORT}->80/tcp" in line)  # fmt: skip
            assert "RESTRICTED" in row and f"from {dropped[1]}/32" in row
        finally:
            dockerd.run("iptables", "-D", *rule)
        assert connect(clients["dropped"], dropped[0]) == "answered"
        samples = dockerd.sample("nat", "firewall", "network", "daemon", "ports")
        assert not select(
            samples, "docker_host_published_port_restricted", container="fwrestricted"
        )
    finally:
        server.remove(force=True)
        client.close()
