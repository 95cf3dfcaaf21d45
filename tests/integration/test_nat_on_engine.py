"""The nat collector against the real firewall and engine. The iptables command line is the
independent reading here (tests may run it; the exporter never does)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import subprocess
import uuid
from typing import Any

import pytest

from exporter.readers.nat_rules import (
    NatRule,
    _rule,
    decode_expressions,
    read_legacy,
    read_nftables,
)
from exporter.readers.nfnetlink import NFPROTO_IPV4, NftSocket
from exporter.settings import Settings
from tests.conftest import Containers
from tests.helpers import sample_once, select, value

pytestmark = pytest.mark.integration

NAT_ONLY = Settings(collectors=("nat",))


def iptables(*args: str, legacy: bool = False) -> str:
    binary = "iptables-legacy" if legacy else "iptables"
    return subprocess.run(
        [binary, *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


def cli_backend() -> str:
    return "iptables-nft" if "nf_tables" in iptables("--version") else "iptables-legacy"


def subnet_of(network: Any) -> str:
    return str(network.attrs["IPAM"]["Config"][0]["Subnet"])


def bridge_of(network: Any) -> str:
    return f"br-{network.id[:12]}"


def masquerade_rule(network: Any) -> list[str]:
    return [
        "POSTROUTING",
        "-s",
        subnet_of(network),
        "!",
        "-o",
        bridge_of(network),
        "-j",
        "MASQUERADE",
    ]


def test_decoded_rules_match_iptables_save(containers: Containers, network: Any) -> None:
    c = containers.run("published", ports={"80/tcp": 18181}, network=network.name)
    _, samples = sample_once(NAT_ONLY)
    saved = iptables("-t", "nat", "-S")
    # Every MASQUERADE `-s X ! -o Y` and DNAT `--dport P ... --to-destination A:Q` iptables
    # prints, the exporter decoded, and nothing else.
    cli_masq = set(re.findall(r"-A (\S+) -s (\S+) ! -o (\S+) -j MASQUERADE", saved))
    ours_masq = {
        (s.labels["chain"], s.labels["source"], s.labels["out_interface"])
        for s in select(samples, "docker_host_nat_masquerade_rules", negated="true")
    }
    assert ours_masq == cli_masq
    cli_dnat = set(
        re.findall(r"-A (\S+) .*-p (\w+) .*--dport (\d+) -j DNAT --to-destination (\S+)", saved)
    )
    ours_dnat = {
        (s.labels["chain"], s.labels["protocol"], s.labels["host_port"], s.labels["destination"])
        for s in select(samples, "docker_host_nat_dnat_rules")
    }
    assert ours_dnat == cli_dnat
    address = c.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    assert ("DOCKER", "tcp", "18181", f"{address}:80") in ours_dnat
    assert (("POSTROUTING", subnet_of(network), bridge_of(network))) in ours_masq
    assert value(samples, "docker_host_nat_backend_info", backend=cli_backend()) == 1
    assert value(samples, "docker_host_nat_masquerade_missing", network=network.name) == 0
    assert (
        value(
            samples,
            "docker_host_nat_dnat_missing",
            container=c.name,
            host_port="18181",
            family="ipv4",
        )
        == 0
    )
    assert value(samples, "docker_host_nat_rules_split_across_backends") == 0
    assert value(samples, "docker_host_collector_success", collector="nat") == 1


def test_deleted_masquerade_rule_is_missing_until_restored(network: Any) -> None:
    rule = masquerade_rule(network)
    iptables("-t", "nat", "-D", *rule)
    try:
        _, samples = sample_once(NAT_ONLY)
        assert (
            value(
                samples,
                "docker_host_nat_masquerade_missing",
                network=network.name,
                subnet=subnet_of(network),
                bridge=bridge_of(network),
            )
            == 1
        )
        assert value(samples, "docker_host_nat_masquerade_missing", network="bridge") == 0
    finally:
        iptables("-t", "nat", "-A", *rule)
    _, samples = sample_once(NAT_ONLY)
    assert value(samples, "docker_host_nat_masquerade_missing", network=network.name) == 0


def test_deleted_dnat_rule_is_missing_until_restored(containers: Containers) -> None:
    c = containers.run("dnat", ports={"8080/tcp": 18282})
    address = c.attrs["NetworkSettings"]["IPAddress"]
    rule = [
        "DOCKER",
        "!",
        "-i",
        "docker0",
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        "18282",
        "-j",
        "DNAT",
        "--to-destination",
        f"{address}:8080",
    ]
    iptables("-t", "nat", "-D", *rule)
    try:
        _, samples = sample_once(NAT_ONLY)
        assert (
            value(
                samples,
                "docker_host_nat_dnat_missing",
                container=c.name,
                protocol="tcp",
                host_port="18282",
                container_port="8080",
            )
            == 1
        )
    finally:
        iptables("-t", "nat", "-A", *rule)
    _, samples = sample_once(NAT_ONLY)
    assert value(samples, "docker_host_nat_dnat_missing", container=c.name, family="ipv4") == 0


def test_no_verdict_for_internal_or_unmasqueraded_networks(engine: Any) -> None:
    internal = engine.networks.create(
        f"dhe-int-{uuid.uuid4().hex[:6]}", internal=True, labels={"dhe-test": "1"}
    )
    plain = engine.networks.create(
        f"dhe-nomasq-{uuid.uuid4().hex[:6]}",
        labels={"dhe-test": "1"},
        options={"com.docker.network.bridge.enable_ip_masquerade": "false"},
    )
    try:
        _, samples = sample_once(NAT_ONLY)
        for n in (internal, plain):
            assert not select(samples, "docker_host_nat_masquerade_missing", network=n.name)
        assert all(s.value == 0 for s in select(samples, "docker_host_nat_masquerade_missing"))
    finally:
        internal.remove()
        plain.remove()


def test_rules_split_across_backends(network: Any) -> None:
    legacy_rule = ["POSTROUTING", "-s", "10.213.0.0/16", "!", "-o", "dhe-split", "-j", "MASQUERADE"]
    iptables("-t", "nat", "-A", *legacy_rule, legacy=True)
    try:
        _, samples = sample_once(NAT_ONLY)
        assert value(samples, "docker_host_nat_rules_split_across_backends") == 1
        assert (
            value(
                samples,
                "docker_host_nat_masquerade_rules",
                backend="legacy",
                source="10.213.0.0/16",
                out_interface="dhe-split",
                negated="true",
            )
            == 1
        )
        assert value(samples, "docker_host_nat_rules", backend="legacy", family="ipv4") >= 1
    finally:
        iptables("-t", "nat", "-D", *legacy_rule, legacy=True)
    _, samples = sample_once(NAT_ONLY)
    assert value(samples, "docker_host_nat_rules_split_across_backends") == 0


def same_rules(ours: list[NatRule], reference: list[NatRule]) -> bool:
    """The same rules, in any order (their counters are not NatRule's: NatCounters)."""

    def key(rule: NatRule) -> tuple[str, ...]:
        return tuple(str(v) for v in dataclasses.astuple(rule))

    return sorted(map(key, ours)) == sorted(map(key, reference))


def pyroute2_reading() -> list[NatRule]:
    """The same table read by pyroute2's NFTables and decoded by the same decoder: the
    reference our own nfnetlink parsing must agree with."""
    from pyroute2.nftables.main import NFTables  # noqa: PLC0415

    nft = NFTables()
    try:
        rules = nft.get_rules()
    finally:
        nft.close()
    found = []
    for rule in rules:
        if rule["nfgen_family"] != NFPROTO_IPV4:
            continue
        decoded = decode_expressions(rule.get_attr("NFTA_RULE_EXPRESSIONS") or [])
        if decoded.action:
            table, chain = rule.get_attr("NFTA_RULE_TABLE"), rule.get_attr("NFTA_RULE_CHAIN")
            found.append(_rule("nftables", table, chain, decoded))
    return found


def test_nf_tables_read_over_our_nfnetlink_agrees_with_pyroute2(
    containers: Containers, network: Any
) -> None:
    containers.run("published", ports={"80/tcp": 18182}, network=network.name)
    # Native nft rules too (Docker's nftables backend writes these), in a table of our own.
    table = f"dhe_test_{uuid.uuid4().hex[:6]}"
    script = f"""
        add table ip {table}
        add chain ip {table} post {{ type nat hook postrouting priority 100; }}
        add chain ip {table} pre {{ type nat hook prerouting priority -100; }}
        add rule ip {table} post ip saddr 10.99.0.0/16 oifname != "dhebr9" counter masquerade
        add rule ip {table} pre iifname "dhebr9" tcp dport 18999 counter dnat to 10.99.0.5:80
    """
    subprocess.run(["nft", "-f", "-"], input=script, check=True, text=True, timeout=30)
    try:
        sock = NftSocket()
        try:
            _, ours = read_nftables(sock)
        finally:
            sock.close()
        reference = pyroute2_reading()
    finally:
        subprocess.run(["nft", "delete", "table", "ip", table], check=True, timeout=30)

    assert same_rules(ours, reference)
    native = {(r.chain, r.action, r.source, r.out_interface, r.out_negated, r.dport, r.to_address,
               r.to_port) for r in ours if r.table == table}  # fmt: skip
    assert native == {
        ("post", "masquerade", "10.99.0.0/16", "dhebr9", True, None, None, None),
        ("pre", "dnat", None, None, False, 18999, "10.99.0.5", 80),
    }
    assert any(r.action == "dnat" and r.dport == 18182 for r in ours)


def _iptc_address(text: str | None) -> str | None:
    if not text or text.startswith("!"):
        return None
    network = ipaddress.IPv4Network(text, strict=False)
    return None if network.prefixlen == 0 else str(network)


def _iptc_interface(text: str | None) -> tuple[str | None, bool]:
    return (text.lstrip("!"), text.startswith("!")) if text else (None, False)


def python_iptables_reading() -> list[NatRule]:
    """The legacy nat table as python-iptables (libiptc) reads it: the reference our own
    IPT_SO_GET_ENTRIES parsing must agree with."""
    import iptc  # noqa: PLC0415

    table = iptc.Table(iptc.Table.NAT, autocommit=False)
    table.refresh()
    found = []
    for chain in table.chains:
        for r in chain.rules:
            target = r.target.name if r.target else ""
            if target not in ("MASQUERADE", "DNAT"):
                continue
            to_address = to_port = None
            if target == "DNAT" and (to := r.target.to_destination):
                host, _, port = to.partition(":")
                to_address, to_port = host or None, int(port.split("-")[0]) if port else None
            dport = next((m.dport for m in r.matches if m.name in ("tcp", "udp") and m.dport), None)

            in_interface, in_negated = _iptc_interface(r.in_interface)
            out_interface, out_negated = _iptc_interface(r.out_interface)
            found.append(
                NatRule(
                    backend="legacy",
                    table="nat",
                    chain=chain.name,
                    action="masquerade" if target == "MASQUERADE" else "dnat",
                    source=_iptc_address(r.src),
                    destination=_iptc_address(r.dst),
                    in_interface=in_interface,
                    in_negated=in_negated,
                    out_interface=out_interface,
                    out_negated=out_negated,
                    protocol=r.protocol if r.protocol not in (None, "ip", "all") else None,
                    dport=int(dport.split(":")[0]) if dport else None,
                    to_address=to_address,
                    to_port=to_port,
                )
            )
    return found


LEGACY_RULES = (
    ("-N", "DHE-TEST"),
    ("-A", "POSTROUTING", "-s", "10.98.0.0/16", "!", "-o", "dhebr8", "-j", "MASQUERADE"),
    ("-A", "POSTROUTING", "-o", "br-+", "-j", "MASQUERADE"),
    ("-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DHE-TEST"),
    ("-A", "DHE-TEST", "!", "-i", "dhebr8", "-p", "tcp", "-m", "tcp", "--dport", "18998",
     "-j", "DNAT", "--to-destination", "10.98.0.5:80"),
    ("-A", "DHE-TEST", "-p", "udp", "--dport", "18997", "-j", "DNAT",
     "--to-destination", "10.98.0.6:53"),
    ("-A", "DHE-TEST", "-d", "10.98.0.7/32", "-p", "tcp", "--dport", "18996:18999", "-j", "DNAT",
     "--to-destination", "10.98.0.7"),
)  # fmt: skip


def test_ip_tables_read_over_getsockopt_agrees_with_libiptc_and_iptables_legacy(
    root: None,
) -> None:
    for rule in LEGACY_RULES:
        iptables("-t", "nat", *rule, legacy=True)
    try:
        backend, ours = read_legacy("/proc")
        reference = python_iptables_reading()
        saved = iptables("-t", "nat", "-S", legacy=True)
    finally:
        iptables("-t", "nat", "-D", *LEGACY_RULES[3][1:], legacy=True)
        for rule in reversed(LEGACY_RULES[1:]):
            if rule[1] != "PREROUTING":
                iptables("-t", "nat", "-D", *rule[1:], legacy=True)
        iptables("-t", "nat", "-X", "DHE-TEST", legacy=True)

    assert same_rules(ours, reference)
    assert backend.readable
    assert backend.nat_rules == sum(line.startswith("-A ") for line in saved.splitlines())
    assert "nat/DOCKER" not in backend.docker_chains or "-N DOCKER" in saved
    mine = {
        (r.chain, r.action, r.source, r.destination, r.in_interface, r.in_negated,
         r.out_interface, r.out_negated, r.protocol, r.dport, r.to_address, r.to_port)
        for r in ours
        if r.chain == "DHE-TEST" or "98" in (r.source or "") or r.out_interface == "br-+"
    }  # fmt: skip
    assert mine == {
        ("POSTROUTING", "masquerade", "10.98.0.0/16", None, None, False, "dhebr8", True,
         None, None, None, None),
        ("POSTROUTING", "masquerade", None, None, None, False, "br-+", False,
         None, None, None, None),
        ("DHE-TEST", "dnat", None, None, "dhebr8", True, None, False, "tcp", 18998,
         "10.98.0.5", 80),
        ("DHE-TEST", "dnat", None, None, None, False, None, False, "udp", 18997,
         "10.98.0.6", 53),
        ("DHE-TEST", "dnat", None, "10.98.0.7/32", None, False, None, False, "tcp", 18996,
         "10.98.0.7", None),
    }  # fmt: skip
