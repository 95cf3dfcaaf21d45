"""Issue 24: the nat rules' counters apart from the rules. In a network namespace of the test's
own, Docker 20.10's rules (iptables-nft, or iptables-legacy) and a DNAT per published port:
traffic through one DNAT rule moves that rule's counters only, and the nat and firewall sources
hand back their very last facts (so no verdict writer runs again); a rule inserted gives new
facts, equal to a reading from scratch. The renders through one Renderer equal renders from
scratch."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import unavailable
from tests.engines import in_netns
from tests.engines import netns as own_netns
from tests.filter_text import docker20_filter, restore_text

pytestmark = [pytest.mark.integration, pytest.mark.isolated]

LOCAL = "10.255.0.1"  # the namespace's own address: traffic to it passes nat OUTPUT
NAT = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER ! -i docker0 -p udp -m udp --dport 20001 -j DNAT --to-destination 172.17.0.2:53
-A DOCKER ! -i docker0 -p udp -m udp --dport 20002 -j DNAT --to-destination 172.17.0.3:53
COMMIT
"""


@pytest.fixture
def netns(root: None) -> Iterator[str]:
    for program in ("nsenter", "iptables-nft-restore", "iptables-legacy-restore"):
        if not shutil.which(program):
            unavailable(f"{program} not installed")
    with own_netns("dhe-co-") as name:
        yield name


inside = in_netns


# (backend, the rules decoded at each of the three samples: nf_tables chain dumps, ip_tables
# tables decoded): decoded at the first and after the rule inserted, not after the traffic.
BACKENDS = [("nft", [[1, 0], [1, 0], [2, 0]]), ("legacy", [[1, 2], [1, 2], [1, 3]])]


@pytest.mark.parametrize(("backend", "decoded"), BACKENDS, ids=[b for b, _ in BACKENDS])
def test_traffic_moves_counters_only_and_a_rule_inserted_changes_the_facts(
    netns: str, backend: str, decoded: list[list[int]]
) -> None:
    inside(netns, "ip", "link", "set", "lo", "up")
    inside(netns, "ip", "address", "add", f"{LOCAL}/32", "dev", "lo")
    accepts = (("172.17.0.2/32", "docker0", "udp", 53), ("172.17.0.3/32", "docker0", "udp", 53))
    restore = f"iptables-{backend}-restore"
    inside(netns, restore, stdin=restore_text(docker20_filter(accepts=accepts)))
    inside(netns, restore, "--noflush", stdin=NAT)
    change = [f"iptables-{backend}", "-t", "nat", "-A", "DOCKER", "!", "-i", "docker0",
              "-p", "udp", "--dport", "20003", "-j", "DNAT",
              "--to-destination", "172.17.0.4:53"]  # fmt: skip
    probe = (sys.executable, "-m", "tests.filter_probe", "counted", LOCAL, "20001", *change)
    found = json.loads(inside(netns, *probe))
    # Traffic through 20001's DNAT: its counters moved, and nothing else did.
    assert found["moved"] == [20001]
    assert found["same_nat_facts"] and found["same_firewall_facts"]
    assert found["rules_decoded"] == decoded
    # A rule inserted: new facts, the same as a reading from scratch, counters and all.
    assert found["third_is_fresh"]
    assert found["third_rules"] == [0, 20001, 20002, 20003]
    assert found["third_as_from_scratch"]
    # nat's verdict writer, its counter writer, firewall's writer: the verdicts written again
    # only for the new rule (firewall's too: its backends count the nat rules), the counters
    # after the traffic and after the new rule.
    assert found["writer_runs"] == [2, 3, 2]
    assert found["renders_as_from_scratch"] == [True, True, True]
