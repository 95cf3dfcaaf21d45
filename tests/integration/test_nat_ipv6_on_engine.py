"""IPv6 NAT against a real dockerd with ip6tables on (issue 13, part 4), in both firewall
backends. The dockerd is the tests' own, in a network namespace of its own (tests/own_dockerd.py),
so its iptables and ip6tables chains never meet the host dockerd's. The independent readings are
`ip6tables -t nat -S` (nft or legacy, as dockerd ran it), `nft -j list ruleset ip6` and
python-iptables' Table6; the exporter runs none of them."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.settings import Settings
from tests.conftest import unavailable
from tests.helpers import sample_once, select, value
from tests.own_dockerd import Ipv6Dockerd, ipv6_dockerd

pytestmark = pytest.mark.integration

SUBNET4, SUBNET6 = "172.30.77.0/24", "fd00:d4f::/64"
PORT, OTHER_PORT = 18380, 18381


@pytest.fixture(scope="module", params=["nft", "legacy"])
def v6(request: pytest.FixtureRequest, engine: Any) -> Iterator[tuple[Ipv6Dockerd, Any, Any]]:
    """The dockerd, an IPv6 user network with a container publishing PORT, and a container on
    the default bridge (IPv6 from fixed-cidr-v6) publishing OTHER_PORT."""
    firewall = str(request.param)
    if firewall == "legacy" and not shutil.which("ip6tables-legacy"):
        unavailable("ip6tables-legacy not installed")
    if not shutil.which("nsenter"):
        unavailable("nsenter not installed (util-linux)")
    with ipv6_dockerd(firewall) as dockerd:
        client = dockerd.client()
        try:
            network = client.networks.create(
                "dh6net",
                driver="bridge",
                enable_ipv6=True,
                ipam={"Config": [{"Subnet": SUBNET4}, {"Subnet": SUBNET6}]},
            )
            web = client.containers.run(
                "dhe-test/busybox:latest",
                "sleep 3600",
                name="v6web",
                detach=True,
                network=network.name,
                ports={"80/tcp": PORT},
            )
            other = client.containers.run(
                "dhe-test/busybox:latest",
                "sleep 3600",
                name="v6other",
                detach=True,
                ports={"81/tcp": OTHER_PORT},
            )
            web.reload()
            other.reload()
            network.reload()
            yield dockerd, network, web
        finally:
            client.close()


def bridge_of(network: Any) -> str:
    return f"br-{network.id[:12]}"


def ipv6_of(container: Any, network: str) -> str:
    return str(container.attrs["NetworkSettings"]["Networks"][network]["GlobalIPv6Address"])


def dnat6_rule(network: Any, web: Any) -> list[str]:
    return [
        "DOCKER", "!", "-i", bridge_of(network), "-p", "tcp", "-m", "tcp", "--dport", str(PORT),
        "-j", "DNAT", "--to-destination", f"[{ipv6_of(web, network.name)}]:80",
    ]  # fmt: skip


# The tests on `v6` are isolated (tests/conftest.py): its dockerd, rules and containers are in a
# network namespace of its own; the one reading the host's ip6tables stays in the host group.
@pytest.mark.isolated
def test_ipv6_rules_are_found_and_match_ip6tables(v6: tuple[Ipv6Dockerd, Any, Any]) -> None:
    dockerd, network, web = v6
    samples = dockerd.sample_nat()
    saved = dockerd.run("ip6tables", "-t", "nat", "-S")
    assert f"-A POSTROUTING -s {SUBNET6} ! -o {bridge_of(network)} -j MASQUERADE" in saved
    assert value(samples, "docker_host_collector_success", collector="nat") == 1
    assert value(samples, "docker_host_nat_judged", family="ipv6") == 1
    assert value(samples, "docker_host_nat_judged", family="ipv4") == 1
    backend = "iptables-legacy" if dockerd.firewall == "legacy" else "iptables-nft"
    assert value(samples, "docker_host_nat_backend_info", backend=backend) == 1

    # Every IPv6 MASQUERADE `-s X ! -o Y` and DNAT ip6tables prints, decoded, and no other.
    cli_masq = set(re.findall(r"-A (\S+) -s (\S+) ! -o (\S+) -j MASQUERADE", saved))
    ours_masq = {
        (s.labels["chain"], s.labels["source"], s.labels["out_interface"])
        for s in select(samples, "docker_host_nat_masquerade_rules", family="ipv6", negated="true")
    }
    assert ours_masq == cli_masq
    cli_dnat = set(
        re.findall(r"-A (\S+) .*-p (\w+) .*--dport (\d+) -j DNAT --to-destination (\S+)", saved)
    )
    ours_dnat = {
        (s.labels["chain"], s.labels["protocol"], s.labels["host_port"], s.labels["destination"])
        for s in select(samples, "docker_host_nat_dnat_rules", family="ipv6")
    }
    assert ours_dnat == cli_dnat
    assert ("DOCKER", "tcp", str(PORT), f"[{ipv6_of(web, network.name)}]:80") in ours_dnat

    # The verdicts: both families of both subnets and ports, none missing.
    for family, subnet in (("ipv4", SUBNET4), ("ipv6", SUBNET6)):
        assert (
            value(
                samples,
                "docker_host_nat_masquerade_missing",
                network=network.name,
                subnet=subnet,
                family=family,
            )
            == 0
        )
    missing = select(samples, "docker_host_nat_dnat_missing")
    published = (("v6web", PORT), ("v6other", OTHER_PORT))
    assert {
        (s.labels["container"], s.labels["host_port"], s.labels["family"]) for s in missing
    } == {(c, str(p), f) for c, p in published for f in ("ipv4", "ipv6")}
    assert all(s.value == 0 for s in missing)
    assert value(samples, "docker_host_nat_rules_split_across_backends") == 0


@pytest.mark.isolated
def test_deleted_ipv6_dnat_is_missing_for_that_port_only_until_restored(
    v6: tuple[Ipv6Dockerd, Any, Any],
) -> None:
    dockerd, network, web = v6
    rule = dnat6_rule(network, web)
    dockerd.run("ip6tables", "-t", "nat", "-D", *rule)
    try:
        samples = dockerd.sample_nat()
    finally:
        dockerd.run("ip6tables", "-t", "nat", "-A", *rule)
    flagged = {
        (s.labels["container"], s.labels["host_port"], s.labels["family"])
        for s in select(samples, "docker_host_nat_dnat_missing")
        if s.value == 1
    }
    assert flagged == {("v6web", str(PORT), "ipv6")}
    assert value(samples, "docker_host_nat_dnat_missing", container="v6web", family="ipv4") == 0
    assert all(s.value == 0 for s in select(samples, "docker_host_nat_masquerade_missing"))

    samples = dockerd.sample_nat()
    assert all(s.value == 0 for s in select(samples, "docker_host_nat_dnat_missing"))
    assert value(samples, "docker_host_nat_dnat_missing", container="v6web", family="ipv6") == 0


@pytest.mark.isolated
def test_deleted_ipv6_masquerade_is_missing_until_restored(
    v6: tuple[Ipv6Dockerd, Any, Any],
) -> None:
    dockerd, network, _ = v6
    rule = ["POSTROUTING", "-s", SUBNET6, "!", "-o", bridge_of(network), "-j", "MASQUERADE"]
    dockerd.run("ip6tables", "-t", "nat", "-D", *rule)
    try:
        samples = dockerd.sample_nat()
    finally:
        dockerd.run("ip6tables", "-t", "nat", "-A", *rule)
    flagged = {
        (s.labels["network"], s.labels["subnet"], s.labels["family"])
        for s in select(samples, "docker_host_nat_masquerade_missing")
        if s.value == 1
    }
    assert flagged == {(network.name, SUBNET6, "ipv6")}
    samples = dockerd.sample_nat()
    assert all(s.value == 0 for s in select(samples, "docker_host_nat_masquerade_missing"))


def _nft_ip6_nat_rules(dockerd: Ipv6Dockerd) -> set[tuple[Any, ...]]:
    """(chain, action, source, out_interface, out_negated, in_interface, in_negated, dport) of
    the ip6 nat table's MASQUERADE and DNAT rules, as libnftables' JSON shows them (it names an
    xtables target but drops its DNAT destination)."""
    ruleset = json.loads(dockerd.run("nft", "-j", "list", "ruleset", "ip6"))
    found = set()
    for item in ruleset["nftables"]:
        rule = item.get("rule")
        if not rule or rule["table"] != "nat":
            continue
        fields: dict[str, Any] = {}
        action = None
        for expr in rule["expr"]:
            if "xt" in expr and expr["xt"]["type"] == "target":
                action = expr["xt"]["name"].lower()
            match = expr.get("match")
            if not match:
                continue
            left, right, negated = match["left"], match["right"], match["op"] == "!="
            key = left.get("meta", {}).get("key") or left.get("payload", {}).get("field")
            if key == "saddr":
                prefix = right["prefix"] if isinstance(right, dict) else {"addr": right, "len": 128}
                fields["source"] = f"{prefix['addr']}/{prefix['len']}"
            elif key in ("oifname", "iifname"):
                fields[key] = (right, negated)
            elif key == "dport":
                fields["dport"] = right
        if action in ("masquerade", "dnat"):
            out, out_negated = fields.get("oifname", (None, False))
            inn, in_negated = fields.get("iifname", (None, False))
            found.add((rule["chain"], action, fields.get("source"), out, out_negated, inn,
                       in_negated, fields.get("dport")))  # fmt: skip
    return found


def _read_in_netns(dockerd: Ipv6Dockerd, backend: str) -> dict[str, Any]:
    """Our reader of one backend, run in the dockerd's network namespace: its facts as JSON."""
    script = (
        "import json, sys\n"
        "from exporter.factcodec import encode\n"
        "from exporter.readers.nat_rules import read_legacy, read_nftables\n"
        "from exporter.readers.nfnetlink import NftSocket\n"
        "if sys.argv[1] == 'legacy':\n"
        "    backend, rules = read_legacy('/proc')\n"
        "else:\n"
        "    sock = NftSocket()\n"
        "    backend, rules = read_nftables(sock)\n"
        "    sock.close()\n"
        "print(json.dumps({'backend': encode(backend), 'rules': encode(rules)}))\n"
    )
    answer: dict[str, Any] = json.loads(dockerd.run(sys.executable, "-c", script, backend))
    return answer


def _comparable(answer: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {
        (r["chain"], r["action"], r["source"], r["out_interface"], r["out_negated"],
         r["in_interface"], r["in_negated"], r["dport"])
        for r in answer["rules"]
        if r["family"] == "ipv6" and r["table"] == "nat"
    }  # fmt: skip


@pytest.mark.isolated
def test_our_reading_agrees_with_the_backends_own_tools(v6: tuple[Ipv6Dockerd, Any, Any]) -> None:
    """nf_tables' ip6 family against `nft -j`; ip6_tables against `ip6tables-legacy -S` and
    python-iptables' Table6 (libip6tc)."""
    dockerd, network, web = v6
    if dockerd.firewall == "nft":
        check_nf_tables_ip6(dockerd)
    else:
        check_ip6_tables(dockerd, network, web)


def check_nf_tables_ip6(dockerd: Ipv6Dockerd) -> None:
    if not shutil.which("nft"):
        unavailable("nft not installed (Debian package nftables)")
    ours = _comparable(_read_in_netns(dockerd, "nftables"))
    reference = _nft_ip6_nat_rules(dockerd)
    assert ours == reference
    assert any(r[1] == "dnat" and r[7] == PORT for r in ours)


def check_ip6_tables(dockerd: Ipv6Dockerd, network: Any, web: Any) -> None:
    answer = _read_in_netns(dockerd, "legacy")
    saved = dockerd.run("ip6tables-legacy", "-t", "nat", "-S")
    ours = [r for r in answer["rules"] if r["family"] == "ipv6"]
    assert answer["backend"]["nat_rules_ipv6"] == sum(
        line.startswith("-A ") for line in saved.splitlines()
    )
    assert "nat/DOCKER" in answer["backend"]["docker_chains_ipv6"]
    printed = set(re.findall(r"-A (\S+) -s (\S+) ! -o (\S+) -j MASQUERADE", saved)) | {
        (chain, port, to)
        for chain, port, to in re.findall(
            r"-A (\S+) .*--dport (\d+) -j DNAT --to-destination (\S+)", saved
        )
    }
    decoded = {
        (r["chain"], r["source"], r["out_interface"])
        for r in ours
        if r["action"] == "masquerade" and r["out_negated"]
    } | {
        (r["chain"], str(r["dport"]), f"[{r['to_address']}]:{r['to_port']}")
        for r in ours
        if r["action"] == "dnat"
    }
    assert decoded == printed
    assert ("DOCKER", str(PORT), f"[{ipv6_of(web, network.name)}]:80") in decoded

    # python-iptables' Table6 (libip6tc) as a third reading.
    table6 = (
        "import json, iptc\n"
        "t = iptc.Table6('nat'); t.refresh()\n"
        "print(json.dumps(sorted([c.name, r.src, r.out_interface, r.target.name]\n"
        "    for c in t.chains for r in c.rules if r.target.name == 'MASQUERADE')))\n"
    )
    libip6tc = json.loads(dockerd.run(sys.executable, "-c", table6))
    masq_ours = sorted(
        [r["chain"], r["source"], r["out_interface"]] for r in ours if r["action"] == "masquerade"
    )
    masq_theirs = sorted(
        [chain, str(ipaddress.IPv6Network(src, strict=False)), out.lstrip("!") if out else None]
        for chain, src, out, _ in libip6tc
    )
    assert masq_ours == masq_theirs
    assert ["POSTROUTING", SUBNET6, bridge_of(network)] in masq_ours


def test_host_without_ipv6_rules_is_not_judged_for_ipv6(root: None) -> None:
    """The host's own dockerd (the test bed's: ip6tables off): no DOCKER chain in any ip6 nat
    table, so no IPv6 verdicts, and the exporter says so."""
    saved = subprocess.run(
        ["ip6tables", "-t", "nat", "-S"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    if "-N DOCKER" in saved:
        pytest.skip("the host's dockerd manages ip6tables here")  # a host fact, not a fault
    _, samples = sample_once(Settings(collectors=("nat",)))
    assert value(samples, "docker_host_nat_judged", family="ipv6") == 0
    assert not [s for s in samples if s.labels.get("family") == "ipv6" and "missing" in s.name]
