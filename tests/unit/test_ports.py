"""ports: /proc/PID/net decoding (as the kernel writes it, and hostile text) and the per-port
verdicts on constructed facts (no root, no host)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from exporter.collectors.daemon.facts import DaemonConfigFacts
from exporter.collectors.firewall.facts import FirewallFacts, ForwardingSwitches
from exporter.collectors.firewall.judge import port_path_suspects
from exporter.collectors.nat.facts import NatExpectations, NatFacts
from exporter.collectors.nat.judge import hairpin_suspects, unmet_or_hairpin
from exporter.collectors.network.facts import NetworkFacts
from exporter.collectors.ports import paths
from exporter.collectors.ports.facts import ContainerListeners, PortsFacts
from exporter.collectors.ports.judge import (
    BROKEN,
    NOT_JUDGED,
    OK,
    RESTRICTED,
    UNKNOWN,
    PortVerdict,
    listener_key,
    port_verdicts,
    proxy_key,
    suspect_keys,
)
from exporter.collectors.ports.report import ports_table
from exporter.readers.docker_api import ContainerRecord, DockerNetwork, PublishedPort
from exporter.readers.nat_rules import NatRule
from exporter.readers.netfilter_base import FirewallBackend
from exporter.readers.netlink import Link
from exporter.readers.network import ContainerNetns
from exporter.readers.proc_net import (
    BoundSocket,
    ProcNetError,
    ProcNetUnreadable,
    ProxyProcess,
    bound_sockets,
    parse_bound_sockets,
    parse_proxy_argv,
)
from tests.filter_text import docker20_filter, parse_ruleset
from tests.fuzzing import FUZZ
from tests.nat_rules import dnat as nat_dnat
from tests.nat_rules import masquerade

TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode"
)


def word(address: bytes) -> str:
    """An address as the kernel prints it: each 32-bit word with %08X on this CPU."""
    return "".join(
        f"{int.from_bytes(address[i : i + 4], sys.byteorder):08X}"
        for i in range(0, len(address), 4)
    )


def line(n: int, local: bytes, port: int, state: str) -> str:
    zero = "0" * len(word(local))
    return (
        f"{n:4d}: {word(local)}:{port:04X} {zero}:0000 {state} 00000000:00000000 00:00000000 "
        f"00000000     0        0 1981594 1 00000000203c4a2e 100 0 0 10 0"
    )


def test_sockets_decode_as_the_kernel_writes_them() -> None:
    v4 = "\n".join(
        [
            TCP_HEADER,
            line(0, bytes([127, 0, 0, 11]), 40000, "0A"),
            line(1, bytes(4), 80, "0A"),
            line(2, bytes([172, 17, 0, 2]), 80, "01"),  # a connection: not a listener
        ]
    )
    assert parse_bound_sockets(v4, "tcp") == (
        BoundSocket("tcp", "127.0.0.11", 40000),
        BoundSocket("tcp", "0.0.0.0", 80),
    )
    v6 = "\n".join(
        [
            TCP_HEADER,
            line(0, bytes(16), 8080, "0A"),
            line(1, bytes.fromhex("fd000d4e000000000000000000000002"), 443, "0A"),
        ]
    )
    assert parse_bound_sockets(v6, "tcp") == (
        BoundSocket("tcp", "::", 8080),
        BoundSocket("tcp", "fd00:d4e::2", 443),
    )
    udp = "\n".join(
        [
            TCP_HEADER,
            line(5065, bytes(4), 67, "07"),
            line(5066, bytes([172, 17, 0, 2]), 5000, "01"),  # connected: takes its peer only
        ]
    )
    assert parse_bound_sockets(udp, "udp") == (BoundSocket("udp", "0.0.0.0", 67),)
    assert parse_bound_sockets(TCP_HEADER + "\n", "tcp") == ()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        TCP_HEADER + "\n   0: 0100007F 0A",
        TCP_HEADER + "\n   0: 0100007F:ZZZZ 00000000:0000 0A",
        TCP_HEADER + "\n   0: 01007F:0050 00000000:0000 0A",
        TCP_HEADER + "\n   0: 0100007F:0050 00000000:0000 ZZ",
        TCP_HEADER + "\n   0 0100007F:0050 00000000:0000 0A",
    ],
)
def test_text_the_kernel_would_not_write_is_refused(text: str) -> None:
    with pytest.raises(ProcNetError):
        parse_bound_sockets(text, "tcp")


@FUZZ
@given(st.text(), st.sampled_from(["tcp", "udp"]))
@example(TCP_HEADER + "\n 0: " + "F" * 32 + ":FFFF 0:0 0A", "tcp")
@example(TCP_HEADER + "\n\0: \u2028:0050 x 0A", "tcp")
def test_hostile_text_decodes_or_is_refused(text: str, protocol: str) -> None:
    try:
        found = parse_bound_sockets(text, protocol)
    except ProcNetError:
        return
    for s in found:
        assert 0 <= s.port <= 0xFFFF and s.protocol == protocol


@FUZZ
@given(st.binary(max_size=400))
def test_hostile_bytes_decode_or_are_refused(data: bytes) -> None:
    text = TCP_HEADER + "\n" + data.decode("ascii", errors="replace")
    try:
        found = parse_bound_sockets(text, "tcp")
    except ProcNetError:
        return
    assert all(isinstance(s.port, int) and s.address for s in found)


def test_files_are_read_ipv6_only_when_ipv4_lacks_a_port(tmp_path: Path) -> None:
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(TCP_HEADER + "\n" + line(0, bytes(4), 80, "0A") + "\n")
    (net / "tcp6").write_text(TCP_HEADER + "\n" + line(0, bytes(16), 443, "0A") + "\n")
    assert bound_sockets(str(tmp_path), 42, "tcp", [80]) == (BoundSocket("tcp", "0.0.0.0", 80),)
    assert bound_sockets(str(tmp_path), 42, "tcp", [80, 443]) == (
        BoundSocket("tcp", "0.0.0.0", 80),
        BoundSocket("tcp", "::", 443),
    )
    with pytest.raises(ProcNetUnreadable) as gone:
        bound_sockets(str(tmp_path), 43, "tcp", [80])
    assert gone.value.gone


def test_docker_proxy_command_lines() -> None:
    argv = (
        "/usr/sbin/docker-proxy",
        "-proto",
        "tcp",
        "-host-ip",
        "::",
        "-host-port",
        "18080",
        "-container-ip",
        "172.17.0.2",
        "-container-port",
        "80",
    )
    assert parse_proxy_argv(argv) == ProxyProcess("tcp", "::", 18080, "172.17.0.2", 80)
    flags = ("docker-proxy", "--proto=udp", "--host-ip=0.0.0.0", "-host-port=53")
    assert parse_proxy_argv((*flags, "-container-ip=10.0.0.2", "-container-port=53")) == (
        ProxyProcess("udp", "0.0.0.0", 53, "10.0.0.2", 53)
    )
    assert parse_proxy_argv(("/usr/bin/sleep", "-host-port", "1")) is None
    assert parse_proxy_argv(("docker-proxy", "-host-ip", "not-an-ip")) is None
    assert parse_proxy_argv(()) is None


# -- verdicts on constructed facts ------------------------------------------------------------

WEB_ID = "a" * 64
TCP80 = PublishedPort("tcp", "0.0.0.0", 8080, 80)
TCP80_V6 = PublishedPort("tcp", "::", 8080, 80)
UDP53 = PublishedPort("udp", "0.0.0.0", 5353, 53)
WEB = ContainerRecord(
    id=WEB_ID,
    name="web",
    image="busybox",
    image_id="sha256:1",
    state="running",
    network_mode="bridge",
    created=0.0,
    ports=(TCP80, TCP80_V6, UDP53),
    addresses=("172.17.0.2",),
)
BRIDGE = DockerNetwork(
    id="n" * 64,
    name="bridge",
    driver="bridge",
    bridge="docker0",
    subnets=("172.17.0.0/16",),
    internal=False,
    ip_masquerade=True,
)
LISTENING = (BoundSocket("tcp", "::", 80), BoundSocket("udp", "0.0.0.0", 53))
PROXIES = tuple(
    ProxyProcess(p.protocol, p.host_ip, p.host_port, "172.17.0.2", p.container_port)
    for p in WEB.ports
)
NFT = FirewallBackend("nftables", True, None, 3, ("nat/DOCKER", "filter/DOCKER"))
LEGACY = FirewallBackend("legacy", True, None, 0, ())


def dnat(port: PublishedPort) -> NatRule:
    return nat_dnat(port.host_port, port.protocol, to_port=port.container_port)


MASQUERADE = masquerade()
# Docker 20.10's filter table for WEB's ports, as `iptables -S` prints it.
FILTER = docker20_filter(
    accepts=(("172.17.0.2/32", "docker0", "tcp", 80), ("172.17.0.2/32", "docker0", "udp", 53)),
    policies=("FORWARD",),
)


EXPECT = NatExpectations(networks=(BRIDGE,), containers=(WEB,))


def fw_facts(filter_text: str = FILTER, ipv4_forward: int = 1) -> FirewallFacts:
    """The firewall collector's facts as its source gives them (of the same reading as NAT)."""
    chains, rules = parse_ruleset(filter_text)
    return FirewallFacts(
        backends=(NFT, LEGACY),
        expectations=EXPECT,
        filter_chains=chains,
        filter_rules=rules,
        forwarding=ForwardingSwitches(ipv4_forward, 0, 1, None),
    )


def second_reading(fw: FirewallFacts) -> FirewallFacts:
    """The firewall's facts as its confirming second reading gives them."""
    return replace(fw, earlier_missing=port_path_suspects(fw))


NAT = NatFacts(
    backends=(NFT, LEGACY), rules=(MASQUERADE, dnat(TCP80), dnat(UDP53)), expectations=EXPECT
)
FW = fw_facts()


def link(index: int, name: str, kind: str, **fields: object) -> Link:
    values: dict[str, object] = {
        "master": None,
        "peer_index": None,
        "peer_nsid": None,
        "operstate": "up",
        "port_state": None,
        "stp_enabled": None,
        "counters": None,
    }
    values.update(fields)
    return Link(index, name, kind, **values)  # type: ignore[arg-type]


DOCKER0 = link(3, "docker0", "bridge", stp_enabled=False)
VETH = link(7, "veth1", "veth", master=3, peer_index=2, peer_nsid=0, port_state="forwarding")
NET = NetworkFacts(
    links=(DOCKER0, VETH),
    container_netns=(ContainerNetns(WEB_ID, 100, 4026532000, 0),),
    peers=(),
    unreadable_netns=0,
)
DAEMON = DaemonConfigFacts(
    pid=10,
    start_time=0.0,
    flag_keys=(),
    config_path="/etc/docker/daemon.json",
    config_path_explicit=False,
    file_present=False,
    file_error=None,
    file_mtime=None,
    file_values=(),
    info=None,
    reloads=(),
    docker_error=None,
)
PORTS = PortsFacts(
    containers=(WEB,),
    networks=(BRIDGE,),
    listeners=(ContainerListeners(WEB_ID, 100, LISTENING),),
    proxies=PROXIES,
    userland_proxy=True,
)


def verdicts(
    ports: PortsFacts = PORTS,
    nat: NatFacts | None = NAT,
    net: NetworkFacts | None = NET,
    fw: FirewallFacts | None = FW,
) -> dict[PublishedPort, PortVerdict]:
    return {v.port: v for v in port_verdicts(ports, nat, fw, net)}


def reason(v: PortVerdict) -> str:
    hop = v.first
    assert hop is not None
    return hop.reason


def first(v: PortVerdict) -> tuple[str, str | None]:
    return v.verdict, v.first.name if v.first else None


def test_a_whole_path_is_ok_and_every_hop_is_judged() -> None:
    found = verdicts()
    assert {p: first(v) for p, v in found.items()} == {
        TCP80: (OK, None),
        TCP80_V6: (OK, None),
        UDP53: (OK, None),
    }
    assert tuple(h.name for h in found[TCP80].hops) == paths.HOPS
    states = {h.name: h.state for h in found[TCP80].hops}
    assert states == {
        "dnat": OK,
        "forward": OK,
        "ip_forward": OK,
        "veth": OK,
        "bridge_port": OK,
        "listener": OK,
        "proxy": OK,
        # userland-proxy on (the default): containers reach the port through docker-proxy.
        "hairpin_masquerade": NOT_JUDGED,
    }
    # No ip6tables NAT here: docker-proxy serves the IPv6 binding, nothing is forwarded, so
    # IPv6 forwarding being off breaks nothing.
    v6 = {h.name: h.state for h in found[TCP80_V6].hops}
    assert v6["dnat"] == v6["ip_forward"] == NOT_JUDGED
    assert suspect_keys(PORTS) == ()
    assert port_path_suspects(FW) == ()


def test_nothing_listening_is_broken_at_the_listener_only_once_confirmed() -> None:
    quiet = replace(PORTS, listeners=(ContainerListeners(WEB_ID, 100, ()),))
    keys = suspect_keys(quiet)
    assert listener_key(WEB_ID, TCP80) in keys and listener_key(WEB_ID, UDP53) in keys
    once = verdicts(quiet)
    assert first(once[TCP80]) == (UNKNOWN, "listener")  # one reading is no verdict
    confirmed = verdicts(replace(quiet, earlier_suspects=keys))
    assert {p: first(v) for p, v in confirmed.items()} == {
        TCP80: (BROKEN, "listener"),
        TCP80_V6: (BROKEN, "listener"),
        UDP53: (BROKEN, "listener"),
    }
    assert [h.name for h in confirmed[TCP80].hops if h.state == BROKEN] == ["listener"]
    assert reason(confirmed[UDP53]) == "nothing bound on udp/53"


def test_a_listener_on_another_address_or_protocol_does_not_count() -> None:
    elsewhere = (BoundSocket("tcp", "127.0.0.1", 80), BoundSocket("tcp", "0.0.0.0", 53))
    ports = replace(PORTS, listeners=(ContainerListeners(WEB_ID, 100, elsewhere),))
    found = verdicts(replace(ports, earlier_suspects=suspect_keys(ports)))
    assert first(found[TCP80]) == (BROKEN, "listener")
    assert "127.0.0.1" in reason(found[TCP80])
    assert first(found[UDP53]) == (BROKEN, "listener")
    own = (BoundSocket("tcp", "172.17.0.2", 80), BoundSocket("udp", "::ffff:172.17.0.2", 53))
    ports = replace(PORTS, listeners=(ContainerListeners(WEB_ID, 100, own),))
    assert all(v.verdict == OK for v in verdicts(ports).values())


def test_unreadable_sockets_give_unknown_never_broken() -> None:
    for read in (
        ContainerListeners(WEB_ID, 100, (), "the container's PID 1 exited while read"),
        ContainerListeners(WEB_ID, 100, (), "/proc/100/net/tcp: Permission denied", True),
    ):
        ports = replace(PORTS, listeners=(read,))
        assert suspect_keys(ports) == suspect_keys(PORTS)
        assert first(verdicts(ports)[TCP80]) == (UNKNOWN, "listener")
    assert first(verdicts(replace(PORTS, listeners=()))[TCP80]) == (UNKNOWN, "listener")


def test_ip_forward_off_breaks_every_forwarded_port() -> None:
    off = fw_facts(ipv4_forward=0)
    assert port_path_suspects(off) == ("forwarding/ipv4",)
    assert first(verdicts(fw=off)[TCP80]) == (UNKNOWN, "ip_forward")  # one reading only
    found = verdicts(fw=second_reading(off))
    assert first(found[TCP80]) == (BROKEN, "ip_forward")
    assert first(found[UDP53]) == (BROKEN, "ip_forward")
    assert found[TCP80_V6].verdict == OK  # docker-proxy serves it: no forwarding
    unread = replace(FW, forwarding=None)
    assert first(verdicts(fw=unread)[TCP80]) == (UNKNOWN, "ip_forward")


def test_a_missing_port_accept_breaks_it_at_the_forward_hop() -> None:
    accept = "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    gone = fw_facts(FILTER.replace(accept + "\n", ""))
    assert first(verdicts(fw=gone)[TCP80]) == (UNKNOWN, "forward")
    found = verdicts(fw=second_reading(gone))
    assert first(found[TCP80]) == (BROKEN, "forward")
    assert "no ACCEPT in DOCKER for 172.17.0.2 tcp/80" in reason(found[TCP80])
    assert found[UDP53].verdict == OK


def test_a_docker_user_drop_shadows_the_port() -> None:
    drop = FILTER.replace(
        "-A DOCKER-USER -j RETURN",
        "-A DOCKER-USER -p tcp --dport 80 -j DROP\n-A DOCKER-USER -j RETURN",
    )
    found = verdicts(fw=second_reading(fw_facts(drop)))
    assert first(found[TCP80]) == (BROKEN, "forward")
    assert "DOCKER-USER" in reason(found[TCP80])
    assert found[UDP53].verdict == OK


def test_a_drop_of_some_sources_makes_the_port_restricted_not_ok() -> None:
    """issue 22: `-s <client> -d <container> -p tcp --dport 80 -j DROP` in DOCKER-USER left the
    port ok, with no hint that some clients are cut off."""
    drop = FILTER.replace(
        "-A DOCKER-USER -j RETURN",
        "-A DOCKER-USER -s 10.77.2.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j DROP\n"
        "-A DOCKER-USER -j RETURN",
    )
    found = verdicts(fw=fw_facts(drop))  # not a suspect: nothing to confirm
    assert found[TCP80].verdict == RESTRICTED
    hop = found[TCP80].first
    assert hop is not None and hop.name == "forward"
    assert [(c.rule, c.sources) for c in hop.cuts] == [
        ("nftables filter/DOCKER-USER rule 1", "from 10.77.2.2/32")
    ]
    assert found[UDP53].verdict == OK
    # Broken or unknown elsewhere on the path wins over restricted.
    quiet = replace(PORTS, listeners=(ContainerListeners(WEB_ID, 100, ()),))
    broken = verdicts(replace(quiet, earlier_suspects=suspect_keys(quiet)), fw=fw_facts(drop))
    assert first(broken[TCP80]) == (BROKEN, "listener")
    text = ports_table(tuple(verdicts(fw=fw_facts(drop)).values()))
    row = next(line for line in text.splitlines() if "0.0.0.0:8080->80/tcp" in line)
    assert "RESTRICTED" in row and "from 10.77.2.2/32" in row


def test_a_missing_dnat_is_the_first_broken_hop_unless_docker_proxy_serves_it() -> None:
    nat = replace(
        NAT,
        rules=(MASQUERADE, dnat(UDP53)),
        earlier_missing=(f"dnat/ipv4/{WEB_ID}/tcp/8080",),
    )
    quiet = replace(PORTS, listeners=(ContainerListeners(WEB_ID, 100, ()),))
    confirmed = replace(quiet, earlier_suspects=suspect_keys(quiet))
    # userland-proxy off: nothing else takes the packets.
    found = verdicts(replace(confirmed, userland_proxy=False, proxies=()), nat=nat)
    assert first(found[TCP80]) == (BROKEN, "dnat")  # first on the path, listener after it
    assert first(found[UDP53]) == (BROKEN, "listener")
    # userland-proxy on: without its DNAT the packets reach docker-proxy, through filter INPUT,
    # which is not read: forwarding is off its path, the DNAT unknown, never broken.
    served = verdicts(confirmed, nat=nat)[TCP80]
    assert first(served) == (BROKEN, "listener")
    states = {h.name: (h.state, h.reason) for h in served.hops}
    assert states["dnat"][0] == UNKNOWN
    assert states["dnat"][1].startswith("no DNAT: docker-proxy may serve it instead")
    assert states["forward"][0] == states["ip_forward"][0] == NOT_JUDGED
    assert first(verdicts(nat=nat)[TCP80]) == (UNKNOWN, "dnat")
    # ... but with its docker-proxy gone too, broken at the DNAT.
    both = replace(confirmed, proxies=PROXIES[1:], earlier_suspects=suspect_keys(confirmed))
    assert first(verdicts(both, nat=nat)[TCP80]) == (BROKEN, "dnat")
    # Missing in one nat reading only: not judged broken by nat, so not here either.
    off = replace(PORTS, userland_proxy=False, proxies=())
    assert verdicts(off, nat=replace(nat, earlier_missing=()))[TCP80].verdict == UNKNOWN


def test_the_network_masquerade_is_on_no_inbound_path() -> None:
    """Replies to an inbound connection are un-NATed by its conntrack entry: a network without
    its MASQUERADE still serves its published ports (nat reports the rule missing)."""
    nat = replace(
        NAT, rules=(dnat(TCP80), dnat(UDP53)), earlier_missing=("masquerade/bridge/172.17.0.0/16",)
    )
    assert all(v.verdict == OK for v in verdicts(nat=nat).values())
    unreadable = replace(NAT, backends=(replace(NFT, readable=False), LEGACY))
    assert first(verdicts(nat=unreadable)[TCP80]) == (UNKNOWN, "dnat")
    assert first(verdicts(nat=None)[TCP80]) == (UNKNOWN, "dnat")


LOOPBACK = PublishedPort("tcp", "127.0.0.1", 8081, 80)
LOOPBACK_WEB = replace(WEB, ports=(LOOPBACK,))
LOOPBACK_PROXY = ProxyProcess("tcp", "127.0.0.1", 8081, "172.17.0.2", 80)


LOOPBACK_EXPECT = NatExpectations(networks=(BRIDGE,), containers=(LOOPBACK_WEB,))


def loopback_nat(*rules: NatRule) -> NatFacts:
    """nat's facts for LOOPBACK_WEB, its DNAT confirmed missing when not among the rules."""
    nat = replace(NAT, rules=rules, expectations=LOOPBACK_EXPECT)
    return replace(nat, earlier_missing=(f"dnat/ipv4/{WEB_ID}/tcp/8081",))


def loopback_fw(filter_text: str = FILTER) -> FirewallFacts:
    return second_reading(replace(fw_facts(filter_text), expectations=LOOPBACK_EXPECT))


def test_a_loopback_binding_with_userland_proxy_on_is_docker_proxy_s() -> None:
    ports = replace(PORTS, containers=(LOOPBACK_WEB,), proxies=(LOOPBACK_PROXY,))
    # Its DNAT and its FORWARD accept gone: neither is on its path (nat OUTPUT skips
    # 127.0.0.0/8), the port still works.
    accept = "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    nat, fw = loopback_nat(MASQUERADE), loopback_fw(FILTER.replace(accept + "\n", ""))
    found = verdicts(ports, nat=nat, fw=fw)[LOOPBACK]
    assert found.verdict == OK
    states = {h.name: h.state for h in found.hops}
    assert states == {
        "dnat": NOT_JUDGED,
        "forward": NOT_JUDGED,
        "ip_forward": NOT_JUDGED,
        "veth": OK,
        "bridge_port": OK,
        "listener": OK,
        "proxy": OK,
        "hairpin_masquerade": NOT_JUDGED,
    }
    assert "off the path" in {h.name: h.reason for h in found.hops}["dnat"]
    # Its docker-proxy gone: broken there.
    gone = replace(ports, proxies=())
    gone = replace(
        gone, userland_proxy=True, earlier_suspects=suspect_keys(replace(gone, userland_proxy=True))
    )
    assert first(verdicts(gone, nat=nat, fw=fw)[LOOPBACK]) == (BROKEN, "proxy")


def test_a_loopback_binding_with_userland_proxy_off_is_dnated_in_output() -> None:
    ports = replace(PORTS, containers=(LOOPBACK_WEB,), proxies=(), userland_proxy=False)
    hairpin = replace(dnat(LOOPBACK), in_interface=None, in_negated=False)
    found = verdicts(ports, nat=loopback_nat(MASQUERADE, hairpin), fw=loopback_fw())[LOOPBACK]
    assert found.verdict == OK
    states = {h.name: h.state for h in found.hops}
    assert (states["dnat"], states["forward"], states["ip_forward"]) == (OK, NOT_JUDGED, NOT_JUDGED)
    gone = verdicts(ports, nat=loopback_nat(MASQUERADE), fw=loopback_fw())[LOOPBACK]
    assert first(gone) == (BROKEN, "dnat")


def per_port_masquerade(address: str = "172.17.0.2", port: int = 80) -> NatRule:
    return replace(
        MASQUERADE,
        source=f"{address}/32",
        destination=f"{address}/32",
        out_interface=None,
        out_negated=False,
        protocol="tcp",
        dport=port,
    )


def nat_second_reading(nat: NatFacts) -> NatFacts:
    """nat's facts as its confirming second reading gives them."""
    return replace(nat, earlier_missing=unmet_or_hairpin(nat))


def test_hairpin_mode_needs_the_per_port_masquerade() -> None:
    """userland-proxy off: a container reaching its own port through the host's address is
    DNAT'ed back to itself, and needs `-s C -d C -p tcp --dport 80 -j MASQUERADE`."""
    hairpin = [replace(dnat(p), in_interface=None, in_negated=False) for p in (TCP80, UDP53)]
    off = replace(PORTS, proxies=(), userland_proxy=False)
    whole = replace(
        NAT, rules=(MASQUERADE, *hairpin, per_port_masquerade(), per_port_masquerade(port=53))
    )
    whole = replace(whole, rules=(*whole.rules[:-1], replace(whole.rules[-1], protocol="udp")))
    assert hairpin_suspects(whole) == ()
    found = verdicts(off, nat=whole)
    assert {h.name: h.state for h in found[TCP80].hops}["hairpin_masquerade"] == OK
    assert found[TCP80].verdict == found[UDP53].verdict == OK
    gone = replace(whole, rules=(MASQUERADE, *hairpin, whole.rules[-1]))
    assert hairpin_suspects(gone) == ("hairpin/ipv4/172.17.0.2/tcp/80",)
    assert first(verdicts(off, nat=gone)[TCP80]) == (UNKNOWN, "hairpin_masquerade")
    found = verdicts(off, nat=nat_second_reading(gone))
    assert first(found[TCP80]) == (BROKEN, "hairpin_masquerade")
    assert "-s 172.17.0.2 -d 172.17.0.2 -p tcp --dport 80 -j MASQUERADE" in reason(found[TCP80])
    assert found[UDP53].verdict == OK
    # userland-proxy on: the DNAT skips the bridge's packets, docker-proxy takes them; the
    # rule 20.10 still writes is off every path.
    on = verdicts(nat=nat_second_reading(NAT))
    assert {h.name: h.state for h in on[TCP80].hops}["hairpin_masquerade"] == NOT_JUDGED
    # dockerd's setting unknown: on a path under one setting only, so never broken.
    unknown = verdicts(replace(off, userland_proxy=None), nat=nat_second_reading(gone))
    assert {h.name: h.state for h in unknown[TCP80].hops}["hairpin_masquerade"] == UNKNOWN


def test_ipv6_bindings_served_by_nothing_known_are_never_ok() -> None:
    # No IPv6 NAT here: docker-proxy alone serves the [::] binding; with it off, nothing does.
    off = verdicts(replace(PORTS, userland_proxy=False, proxies=()))
    assert off[TCP80].verdict == OK
    assert first(off[TCP80_V6]) == (UNKNOWN, "proxy")
    assert "userland-proxy is off and" in reason(off[TCP80_V6])
    # ::1 with the proxy on is docker-proxy's, as 127.0.0.1 is.
    v6_loopback = PublishedPort("tcp", "::1", 8082, 80)
    web = replace(WEB, ports=(v6_loopback,))
    proxy = ProxyProcess("tcp", "::1", 8082, "172.17.0.2", 80)
    ports = replace(PORTS, containers=(web,), proxies=(proxy,))
    assert verdicts(ports)[v6_loopback].verdict == OK
    assert paths.scope("::1") == paths.LOOPBACK6
    assert (paths.LOOPBACK6, False) in paths.UNPROVEN


def test_the_paths_are_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "port-paths.md").read_text()
    assert paths.table() in doc, "run python -m exporter.collectors.ports.paths into the doc"
    for (binding, proxy_on), routes in paths.PATHS.items():
        assert binding in paths.SCOPES and isinstance(proxy_on, bool)
        for route in routes:
            assert set(route.hops) <= set(paths.HOPS)
    assert paths.scope("0.0.0.0") == paths.scope("::") == paths.ANY
    assert paths.scope("127.0.0.1") == paths.LOOPBACK
    assert paths.scope("192.0.2.1") == paths.ADDRESS


def test_no_firewall_managed_means_docker_proxy_serves_everything() -> None:
    backends = (FirewallBackend("nftables", True, None, 0, ()), LEGACY)
    nat = replace(NAT, backends=backends, rules=())
    fw = replace(fw_facts("-P FORWARD DROP", ipv4_forward=0), backends=backends)
    found = verdicts(nat=nat, fw=second_reading(fw))
    assert all(v.verdict == OK for v in found.values())
    assert {h.name: h.state for h in found[TCP80].hops}["dnat"] == NOT_JUDGED


def test_veth_and_bridge_port() -> None:
    down = replace(NET, links=(DOCKER0, replace(VETH, operstate="lowerlayerdown")))
    assert first(verdicts(net=down)[TCP80]) == (BROKEN, "veth")
    blocked = replace(NET, links=(DOCKER0, replace(VETH, port_state="blocking")))
    assert first(verdicts(net=blocked)[TCP80]) == (BROKEN, "bridge_port")
    other = link(4, "br-other", "bridge")
    moved = replace(NET, links=(DOCKER0, other, replace(VETH, master=4)))
    found = verdicts(net=moved)[TCP80]
    assert first(found) == (BROKEN, "bridge_port")
    assert "br-other" in reason(found)
    assert first(verdicts(net=None)[TCP80]) == (UNKNOWN, "veth")
    no_netns = replace(NET, container_netns=())
    assert first(verdicts(net=no_netns)[TCP80]) == (UNKNOWN, "veth")
    no_veth = replace(NET, links=(DOCKER0,))
    assert first(verdicts(net=no_veth)[TCP80]) == (UNKNOWN, "veth")


def test_the_userland_proxy() -> None:
    # One port's proxy gone while the others run: a suspect, read again.
    one_gone = replace(PORTS, proxies=PROXIES[1:])
    assert suspect_keys(one_gone) == (proxy_key(TCP80),)
    # No docker-proxy at all and dockerd's setting unknown: off as far as the source can tell,
    # so no second reading; with the setting on (flag, daemon.json or default), a suspect.
    none = replace(PORTS, proxies=(), userland_proxy=None)
    assert suspect_keys(none) == ()
    keys = suspect_keys(replace(none, userland_proxy=True))
    assert proxy_key(TCP80) in keys and proxy_key(TCP80_V6) in keys
    assert first(verdicts(replace(none, userland_proxy=True))[TCP80]) == (UNKNOWN, "proxy")
    found = verdicts(replace(none, earlier_suspects=keys, userland_proxy=True))
    assert first(found[TCP80]) == (BROKEN, "proxy")
    # Off: not judged. Unknown: unknown, never ok.
    off = replace(none, earlier_suspects=keys, userland_proxy=False)
    assert verdicts(off)[TCP80].verdict == OK
    assert first(verdicts(replace(PORTS, userland_proxy=None))[TCP80]) == (UNKNOWN, "proxy")
    assert verdicts(PORTS)[TCP80].verdict == OK


def test_an_unreadable_engine_judges_nothing_and_the_table() -> None:
    assert port_verdicts(replace(PORTS, containers=None), NAT, FW, NET) == ()
    quiet = replace(PORTS, listeners=(ContainerListeners(WEB_ID, 100, ()),))
    text = ports_table(
        port_verdicts(replace(quiet, earlier_suspects=suspect_keys(quiet)), NAT, FW, NET)
    )
    assert text.splitlines()[1].split() == [
        "PORT",
        "CONTAINER",
        "VERDICT",
        "FIRST",
        "BROKEN",
        "HOP",
    ]
    rows = [row.split(None, 3) for row in text.splitlines()[2:]]
    assert [
        "0.0.0.0:8080->80/tcp",
        "web",
        "BROKEN",
        "listener: nothing listening on tcp/80",
    ] in rows
    assert "[::]:8080->80/tcp" in text


def test_a_rule_the_decoder_did_not_understand_makes_the_forward_hop_unknown() -> None:
    limited = FILTER.replace(
        "-A DOCKER-USER -j RETURN",
        "-A DOCKER-USER -p tcp -m limit --limit 5/s -j DROP\n-A DOCKER-USER -j RETURN",
    )
    found = verdicts(fw=second_reading(fw_facts(limited)))
    assert first(found[TCP80]) == (UNKNOWN, "forward")
    assert "not understood" in reason(found[TCP80])


def test_a_process_gone_or_replaced_mid_read_gives_an_error_not_an_empty_reading(
    tmp_path: Path,
) -> None:
    from exporter.collectors.ports.source import PortsSource  # noqa: PLC0415
    from exporter.readers.procfs import ProcfsReader, ProcStat  # noqa: PLC0415

    stat = "42 (httpd) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0"
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text(stat.format(start=1000))
    procfs = ProcfsReader(tmp_path)
    pid1 = ProcStat(42, "httpd", "S", 1, 1000)
    read, _ = PortsSource._container_listeners(procfs, WEB, pid1, frozenset())
    assert read.error == "the container's PID 1 exited while read" and not read.refused
    net = tmp_path / "42" / "net"
    net.mkdir()
    for name in ("tcp", "tcp6", "udp", "udp6"):
        (net / name).write_text(TCP_HEADER + "\n")
    (tmp_path / "42" / "stat").write_text(stat.format(start=2000))  # pid reused since the scan
    read, _ = PortsSource._container_listeners(procfs, WEB, pid1, frozenset())
    assert read.error == "the container's PID 1 exited while read" and read.sockets == ()
    (tmp_path / "42" / "stat").write_text(stat.format(start=1000))
    (net / "udp").write_text("garbage")
    read, _ = PortsSource._container_listeners(procfs, WEB, pid1, frozenset())
    assert read.error is not None and read.error.startswith("undecodable")


def test_the_forward_hop_needs_the_firewall_collectors_reading() -> None:
    """The forward hop and IP forwarding are the firewall collector's: without its reading
    they are unknown, never guessed from nat's."""
    found = verdicts(fw=None)[TCP80]
    assert first(found) == (UNKNOWN, "forward")
    assert "firewall collector" in reason(found)
    assert {h.name: h.state for h in found.hops}["ip_forward"] == UNKNOWN
