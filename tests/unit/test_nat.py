"""nat decoding and verdicts on constructed inputs (no root, no firewall)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import replace

from exporter.collectors.nat.facts import NatExpectations, NatFacts
from exporter.collectors.nat.judge import (
    docker_firewall,
    judged_families,
    nat_destination,
    nat_verdicts,
    rules_split_across_backends,
    unmet_expectations,
)
from exporter.readers import iptables
from exporter.readers.docker_api import (
    ContainerRecord,
    DockerNetwork,
    PublishedPort,
    container_record,
    docker_network,
)
from exporter.readers.nat_rules import NatRule, decode_nat_target
from exporter.readers.netfilter_base import FirewallBackend, address_prefix, interface_name
from exporter.readers.nfnetlink import NFPROTO_IPV6
from tests.nat_rules import masquerade


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
    assert address_prefix(b"\xac\x11", None) == "172.17.0.0/16"  # iptables-nft compares 2 bytes
    assert address_prefix(b"\xac\x10\x10\x00", b"\xff\xff\xf0\x00") == "172.16.16.0/20"
    assert address_prefix(ip("172.17.0.2"), None) == "172.17.0.2/32"
    assert interface_name(b"docker0\0") == "docker0"
    assert interface_name(b"br-") == "br-+"  # `-o br-+`: a prefix match
    # ip_tables: address and mask; names with the NUL masked are exact, without it prefixes.
    assert iptables._prefix(ip("172.17.0.0"), ip("255.255.0.0")) == "172.17.0.0/16"
    assert iptables._prefix(ip("0.0.0.0"), ip("0.0.0.0")) is None
    assert iptables._interface(b"docker0".ljust(16, b"\0"), b"\xff" * 8 + b"\0" * 8) == "docker0"
    assert iptables._interface(b"br-+".ljust(16, b"\0"), b"\xff" * 3 + b"\0" * 13) == "br-+"
    assert iptables._interface(b"\0" * 16, b"\0" * 16) is None


def rule(**changes: object) -> NatRule:
    return replace(masquerade(), **changes)  # type: ignore[arg-type]


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


# -- IPv6 -----------------------------------------------------------------------------------

NFT6 = FirewallBackend(
    "nftables", True, None, 3, ("nat/DOCKER",), nat_rules_ipv6=3, docker_chains_ipv6=("nat/DOCKER",)
)
BRIDGE6 = DockerNetwork(
    "n6",
    "v6net",
    "bridge",
    "br-000000000006",
    ("172.30.0.0/24", "fd00:d4f::/64"),
    False,
    True,
    enable_ipv6=True,
)
ROUTED6 = replace(BRIDGE6, id="n7", name="routed", bridge="br-7", gateway_mode_ipv6="routed",
                  subnets=("172.31.0.0/24", "fd00:d50::/64"))  # fmt: skip
WEB6 = ContainerRecord(
    "6" * 64,
    "web6",
    "img",
    "sha256:x",
    "running",
    "v6net",
    0.0,
    ports=(PublishedPort("tcp", "0.0.0.0", 18380, 80), PublishedPort("tcp", "::", 18380, 80)),
    addresses=("172.30.0.2",),
    ipv6_addresses=("fd00:d4f::2",),
)
V4_ONLY = replace(WEB6, id="4" * 64, name="v4only", ipv6_addresses=(),
                  ports=(PublishedPort("tcp", "::", 18390, 90),))  # fmt: skip
ROUTED_WEB = replace(WEB6, id="7" * 64, name="routedweb", addresses=("172.31.0.2",),
                     ipv6_addresses=("fd00:d50::2",),
                     ports=(PublishedPort("tcp", "::", 18391, 91),))  # fmt: skip
MASQ6 = rule(family="ipv6", source="fd00:d4f::/64", out_interface="br-000000000006")
MASQ4 = rule(source="172.30.0.0/24", out_interface="br-000000000006")
DNAT4 = replace(DNAT, dport=18380, to_address="172.30.0.2", in_interface="br-000000000006")
DNAT6 = replace(DNAT4, family="ipv6", to_address="fd00:d4f::2")


def facts6(
    rules: tuple[NatRule, ...],
    earlier: tuple[str, ...] = (),
    backends: tuple[FirewallBackend, ...] = (NFT6, LEGACY),
) -> NatFacts:
    expect = NatExpectations(networks=(BRIDGE6, ROUTED6), containers=(WEB6, V4_ONLY, ROUTED_WEB))
    return NatFacts(backends=backends, rules=rules, expectations=expect, earlier_missing=earlier)


def test_ipv6_rules_expected_and_found() -> None:
    nat = facts6((MASQ4, MASQ6, DNAT4, DNAT6))
    assert judged_families(nat) == {"ipv4": True, "ipv6": True}
    masq, dnat = nat_verdicts(nat)
    # The routed network's IPv6 is not NATed: its IPv4 subnet only. A container with no IPv6
    # address is reached on :: through docker-proxy, with no DNAT.
    assert sorted((m.network, m.subnet, m.family, gone) for m, gone in masq) == [
        ("routed", "172.31.0.0/24", "ipv4", False),
        ("v6net", "172.30.0.0/24", "ipv4", False),
        ("v6net", "fd00:d4f::/64", "ipv6", False),
    ]
    assert sorted((d.container, d.host_port, d.family, gone) for d, gone in dnat) == [
        ("web6", 18380, "ipv4", False),
        ("web6", 18380, "ipv6", False),
    ]
    assert unmet_expectations(nat) == ("masquerade/routed/172.31.0.0/24",)


def test_missing_ipv6_dnat_is_its_own_verdict() -> None:
    once = facts6((MASQ4, MASQ6, DNAT4))
    assert unmet_expectations(once) == (
        "masquerade/routed/172.31.0.0/24",
        f"dnat/ipv6/{WEB6.id}/tcp/18380",
    )
    _, dnat = nat_verdicts(facts6((MASQ4, MASQ6, DNAT4), earlier=unmet_expectations(once)))
    assert {(d.family, gone) for d, gone in dnat} == {("ipv4", False), ("ipv6", True)}
    # An IPv4 rule to the same port does not stand in for the IPv6 one, nor the reverse.
    _, dnat = nat_verdicts(facts6((MASQ6, DNAT6), earlier=unmet_expectations(facts6((DNAT6,)))))
    assert {(d.family, gone) for d, gone in dnat} == {("ipv4", True), ("ipv6", False)}
    masq, _ = nat_verdicts(facts6((MASQ4,), earlier=("masquerade/v6net/fd00:d4f::/64",)))
    assert [m.family for m, gone in masq if gone] == ["ipv6"]


def test_no_ipv6_verdicts_where_docker_manages_no_ip6tables() -> None:
    nat = facts6((MASQ4, DNAT4), backends=(NFT, LEGACY))
    assert judged_families(nat) == {"ipv4": True, "ipv6": False}
    masq, dnat = nat_verdicts(nat)
    assert {m.family for m, _ in masq} == {d.family for d, _ in dnat} == {"ipv4"}
    # A filter-table DOCKER chain alone (ip6tables filter only) is not IPv6 NAT.
    filter_only = replace(NFT, docker_chains_ipv6=("filter/DOCKER",))
    assert judged_families(facts6((), backends=(filter_only, LEGACY)))["ipv6"] is False
    # Docker 29's own ip6 table is.
    native = replace(NFT, docker_chains_ipv6=("docker-bridges/nat-postrouting",))
    assert judged_families(facts6((), backends=(native, LEGACY)))["ipv6"] is True


def test_ipv6_decoding() -> None:
    v6 = ipaddress.IPv6Address("fd00:98::5").packed
    rev1 = struct.pack("=I", 3) + v6 * 2 + struct.pack(">HH", 80, 80)
    assert decode_nat_target("DNAT", 1, rev1, NFPROTO_IPV6) == ("fd00:98::5", 80)
    assert decode_nat_target("DNAT", 0, b"\0" * 40, NFPROTO_IPV6) == (None, None)
    assert address_prefix(b"\xfd\x00\x0d\x4f\0\0\0\0", None, 16) == "fd00:d4f::/64"
    assert address_prefix(v6, None, 16) == "fd00:98::5/128"
    assert address_prefix(v6 + b"\0", None, 16) is None
    mask = b"\xff" * 6 + b"\xf0" + b"\0" * 9
    assert iptables._prefix(v6, mask) == "fd00:98::/52"
    assert iptables._prefix(v6, b"\0" * 16) is None
    assert nat_destination(DNAT6) == "[fd00:d4f::2]:80"
    assert nat_destination(DNAT4) == "172.30.0.2:80"


def test_rules_split_per_family() -> None:
    v4_nft = FirewallBackend("nftables", True, None, 3, ("nat/DOCKER",))
    v6_legacy = FirewallBackend("legacy", True, None, 0, (), nat_rules_ipv6=2)
    assert not rules_split_across_backends((v4_nft, v6_legacy))
    both6 = replace(v4_nft, nat_rules_ipv6=1)
    assert rules_split_across_backends((both6, v6_legacy))


def test_engine_api_addresses_are_validated() -> None:
    entry = {
        "Id": "a" * 64,
        "Names": ["/x"],
        "NetworkSettings": {
            "Networks": {
                "one": {"IPAddress": "172.30.0.2", "GlobalIPv6Address": "FD00:D4F:0::2"},
                "two": {"IPAddress": "not-an-ip", "GlobalIPv6Address": "172.30.0.9"},
                "three": None,
            }
        },
    }
    record = container_record(entry)
    assert (record.addresses, record.ipv6_addresses) == (("172.30.0.2",), ("fd00:d4f::2",))
    network = docker_network(
        {
            "Id": "b" * 64,
            "Name": "v6",
            "Driver": "bridge",
            "EnableIPv6": True,
            "IPAM": {
                "Config": [
                    {"Subnet": "fd00:d4f:0::/64", "Gateway": "FD00:D4F:0::1"},
                    {"Subnet": "bogus", "Gateway": "<b>"},
                    {},
                ]
            },
            "Options": {"com.docker.network.bridge.gateway_mode_ipv6": "routed"},
        }
    )
    assert network.subnets == ("fd00:d4f::/64",)
    assert network.gateways == ("fd00:d4f::1",)
    assert (network.enable_ipv6, network.gateway_mode_ipv6) == (True, "routed")
