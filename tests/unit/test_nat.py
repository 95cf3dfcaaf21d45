"""nat decoding and verdicts on constructed inputs (no root, no firewall)."""

from __future__ import annotations

import ipaddress
import struct

from exporter.facts import (
    ContainerRecord,
    DockerNetwork,
    FirewallBackend,
    NatExpectations,
    NatFacts,
    NatRule,
    PublishedPort,
)
from exporter.plumbing import docker_firewall, nat_verdicts, unmet_expectations
from exporter.readers import iptables
from exporter.readers.netfilter import _interface, _prefix, decode_nat_target


def ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def test_dnat_target_revision_0_and_2() -> None:
    # nf_nat_ipv4_multi_range_compat: rangesize, flags, min_ip, max_ip, min port, max port
    rev0 = struct.pack("=II", 1, 3) + ip("172.17.0.2") * 2 + struct.pack(">HH", 80, 80)
    assert decode_nat_target("DNAT", 0, rev0) == ("172.17.0.2", 80)
    # nf_nat_range2: flags, min_addr[16], max_addr[16], min, max, base
    rev2 = (
        struct.pack("=I", 3)
        + ip("10.0.0.9").ljust(16, b"\0") * 2
        + struct.pack(">HHH", 8080, 8080, 0)
        + b"\0\0"
    )
    assert decode_nat_target("DNAT", 2, rev2) == ("10.0.0.9", 8080)
    address_only = struct.pack("=I", 1) + ip("10.0.0.9").ljust(16, b"\0") * 2 + b"\0" * 8
    assert decode_nat_target("DNAT", 2, address_only) == ("10.0.0.9", None)
    assert decode_nat_target("SNAT", 2, rev2) == (None, None)
    assert decode_nat_target("DNAT", 2, b"short") == (None, None)


def test_prefixes_interfaces_and_legacy_addresses() -> None:
    assert _prefix(b"\xac\x11", None) == "172.17.0.0/16"  # iptables-nft compares 2 bytes
    assert _prefix(b"\xac\x10\x10\x00", b"\xff\xff\xf0\x00") == "172.16.16.0/20"
    assert _prefix(ip("172.17.0.2"), None) == "172.17.0.2/32"
    assert _interface(b"docker0\0") == "docker0"
    assert _interface(b"br-") == "br-+"  # `-o br-+`: a prefix match
    # ip_tables: address and mask; names with the NUL masked are exact, without it prefixes.
    assert iptables._prefix(ip("172.17.0.0"), ip("255.255.0.0")) == "172.17.0.0/16"
    assert iptables._prefix(ip("0.0.0.0"), ip("0.0.0.0")) is None
    assert iptables._interface(b"docker0".ljust(16, b"\0"), b"\xff" * 8 + b"\0" * 8) == "docker0"
    assert iptables._interface(b"br-+".ljust(16, b"\0"), b"\xff" * 3 + b"\0" * 13) == "br-+"
    assert iptables._interface(b"\0" * 16, b"\0" * 16) is None


def rule(**changes: object) -> NatRule:
    base: dict[str, object] = dict(
        backend="nftables",
        table="nat",
        chain="POSTROUTING",
        action="masquerade",
        source="172.17.0.0/16",
        destination=None,
        in_interface=None,
        in_negated=False,
        out_interface="docker0",
        out_negated=True,
        protocol=None,
        dport=None,
        to_address=None,
        to_port=None,
        packets=0,
        bytes=0,
    )
    return NatRule(**{**base, **changes})  # type: ignore[arg-type]


NFT = FirewallBackend("nftables", True, None, 3, ("nat/DOCKER",))
LEGACY = FirewallBackend("legacy", True, None, 0, ())
BRIDGE = DockerNetwork("n1", "bridge", "bridge", "docker0", ("172.17.0.0/16",), False, True)
INTERNAL = DockerNetwork("n2", "int", "bridge", "br-000000000002", ("172.19.0.0/16",), True, True)
NO_MASQ = DockerNetwork(
    "n3", "nomasq", "bridge", "br-000000000003", ("172.20.0.0/16",), False, False
)
WEB = ContainerRecord(
    "c" * 64,
    "web",
    "img",
    "sha256:x",
    "running",
    "default",
    0.0,
    ports=(PublishedPort("tcp", "0.0.0.0", 8080, 80), PublishedPort("tcp", "::", 8080, 80)),
    addresses=("172.17.0.2",),
)
DNAT = rule(
    chain="DOCKER",
    action="dnat",
    source=None,
    out_interface=None,
    out_negated=False,
    in_interface="docker0",
    in_negated=True,
    protocol="tcp",
    dport=8080,
    to_address="172.17.0.2",
    to_port=80,
)


def facts(
    rules: tuple[NatRule, ...],
    earlier: tuple[str, ...] = (),
    backends: tuple[FirewallBackend, ...] = (NFT, LEGACY),
) -> NatFacts:
    expect = NatExpectations(networks=(BRIDGE, INTERNAL, NO_MASQ), containers=(WEB,))
    return NatFacts(backends=backends, rules=rules, expectations=expect, earlier_missing=earlier)


def test_everything_present_nothing_missing() -> None:
    nat = facts((rule(), DNAT))
    assert unmet_expectations(nat) == ()
    masq, dnat = nat_verdicts(nat)
    # Internal and unmasqueraded networks expect nothing; the IPv6 binding is ip6tables'.
    assert [(m.network, missing) for m, missing in masq] == [("bridge", False)]
    assert [(d.container, d.host_port, missing) for d, missing in dnat] == [("web", 8080, False)]


def test_missing_needs_two_readings() -> None:
    once = facts((DNAT,))
    assert unmet_expectations(once) == ("masquerade/bridge/172.17.0.0/16",)
    assert [missing for _, missing in nat_verdicts(once)[0]] == [False]
    twice = facts((DNAT,), earlier=unmet_expectations(once))
    assert [missing for _, missing in nat_verdicts(twice)[0]] == [True]


def test_wrong_interface_or_no_negation_does_not_count() -> None:
    for wrong in (rule(out_interface="eth0"), rule(out_negated=False), rule(source="10.0.0.0/8")):
        nat = facts((wrong, DNAT), earlier=("masquerade/bridge/172.17.0.0/16",))
        assert [missing for _, missing in nat_verdicts(nat)[0]] == [True]


def test_no_verdict_without_a_readable_firewall_or_docker_rules() -> None:
    unreadable = FirewallBackend("nftables", False, "nf_tables: Operation not permitted", 0, ())
    assert nat_verdicts(facts((), backends=(unreadable, LEGACY))) == ((), ())
    no_docker = FirewallBackend("nftables", True, None, 0, ())
    assert docker_firewall((no_docker, LEGACY)) == ("none",)
    assert nat_verdicts(facts((), backends=(no_docker, LEGACY))) == ((), ())


def test_docker_firewall_backends() -> None:
    legacy = FirewallBackend("legacy", True, None, 5, ("nat/DOCKER",))
    native = FirewallBackend("nftables", True, None, 0, ("docker-bridges/nat-postrouting",))
    assert docker_firewall((NFT, LEGACY)) == ("iptables-nft",)
    assert docker_firewall((native, legacy)) == ("iptables-legacy", "nftables")
