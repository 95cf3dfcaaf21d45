"""The firewall collector at N published ports, without N containers: Docker
20.10's filter and nat rules for N containers publishing 80/tcp, loaded with iptables-nft into
a network namespace of the benchmark's own, read there the way the tick's firewall reading reads
them (NAT alone, and NAT with the filter rules from the same dumps), then judged: the
missing-rule check every reading runs, the metric families, and every port's forward verdict.

    python -m bench.filter_cost --ports 0 50 250

Root; sends nothing; the namespace goes when it ends.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from exporter.collectors.firewall.facts import FirewallFacts
from exporter.collectors.firewall.judge import filter_index, forward_verdict, unmet_filter_rules
from exporter.collectors.firewall.metrics import write as write_filter
from exporter.collectors.nat.facts import NatExpectations, NatFacts
from exporter.collectors.nat.metrics import write
from exporter.metrics import Families, render
from exporter.readers.docker_api import ContainerRecord, DockerNetwork, PublishedPort
from exporter.readers.nat_rules import read_nftables
from exporter.readers.netfilter import NftCache, read_nftables_with_filter
from exporter.readers.nfnetlink import NftSocket
from exporter.snapshot import CollectorState, Snapshot

BRIDGE = "docker0"
FILTER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
"""


def address(i: int) -> str:
    return f"172.17.{(i + 2) // 256}.{(i + 2) % 256}"


def ruleset(ports: int) -> str:
    lines = [FILTER.strip()]
    lines += [
        f"-A DOCKER -d {address(i)}/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
        for i in range(ports)
    ]
    lines += [
        "COMMIT",
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":DOCKER - [0:0]",
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
    ]
    for i in range(ports):
        a = address(i)
        lines.append(f"-A POSTROUTING -s {a}/32 -d {a}/32 -p tcp -m tcp --dport 80 -j MASQUERADE")
        lines.append(
            f"-A DOCKER ! -i docker0 -p tcp -m tcp --dport {20000 + i} -j DNAT "
            f"--to-destination {a}:80"
        )
    return "\n".join([*lines, "COMMIT", ""])


def expectations(ports: int) -> NatExpectations:
    network = DockerNetwork("n" * 64, "bridge", "bridge", BRIDGE, ("172.17.0.0/16",), False, True)
    containers = tuple(
        ContainerRecord(
            f"{i:064x}",
            f"c{i}",
            "img",
            "sha256:x",
            "running",
            "default",
            0.0,
            ports=(PublishedPort("tcp", "0.0.0.0", 20000 + i, 80),),  # noqa: S104 - a record
            addresses=(address(i),),
        )
        for i in range(ports)
    )
    return NatExpectations((network,), containers, "20.10.24")


def cpu_ms(action: Callable[[], Any], runs: int) -> float:
    action()
    start = time.process_time()
    for _ in range(runs):
        action()
    return round((time.process_time() - start) / runs * 1000, 2)


def measure(ports: int, runs: int) -> dict[str, Any]:
    """In the benchmark's namespace: each step's CPU per sample, ms."""
    sock = NftSocket()
    cache = NftCache()
    reading = read_nftables_with_filter(sock)
    backend, nat_rules, tables = reading.backend, reading.nat, reading.filter
    legacy = replace(backend, name="legacy", nat_rules=0, docker_chains=())
    nat = NatFacts(
        backends=(backend, legacy), rules=tuple(nat_rules), expectations=expectations(ports)
    )
    facts = FirewallFacts(
        backends=(backend, legacy), expectations=expectations(ports),
        filter_chains=tables.chains, filter_rules=tables.rules,
    )  # fmt: skip
    facts = replace(facts, earlier_missing=unmet_filter_rules(facts))
    snapshot = Snapshot().with_state(CollectorState("nat", True, 0.01, 1.0, nat))
    fw_snapshot = Snapshot().with_state(CollectorState("firewall", True, 0.01, 1.0, facts))
    targets = [(address(i), 80) for i in range(ports)]

    def verdicts() -> None:
        # One index of the reading, built by the judging pass, as the ports writer does.
        ix = filter_index(facts)
        for a, p in targets:
            forward_verdict(ix, "ipv4", a, p, "tcp", BRIDGE)

    result = {
        "ports": ports,
        "filter_rules": len(tables.rules),
        "read_nat_only_ms": cpu_ms(lambda: read_nftables(sock), runs),
        # After any change to the ruleset (the filter rules decoded), and while it stands (the
        # rules the last reading's, only the nat rules' counters dumped again).
        "read_nat_and_filter_ms": cpu_ms(lambda: read_nftables_with_filter(sock), runs),
        "read_steady_ms": cpu_ms(lambda: read_nftables_with_filter(sock, cache), runs),
        "unmet_filter_rules_ms": cpu_ms(lambda: unmet_filter_rules(replace(facts)), runs),
        "render_nat_families_ms": cpu_ms(
            lambda: render(
                snapshot.with_state(CollectorState("nat", True, 0.01, 1.0, replace(nat))), [write]
            ),
            runs,
        ),
        "filter_families_ms": cpu_ms(lambda: write_filter(fw_snapshot, Families()), runs),
        "forward_verdicts_ms": cpu_ms(verdicts, runs),
    }
    sock.close()
    return result


def run_in_namespace(ports: int, runs: int) -> dict[str, Any]:
    netns = f"dhf-bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=30)
    try:
        subprocess.run(
            ["nsenter", f"--net=/run/netns/{netns}", "iptables-nft-restore"],
            input=ruleset(ports), text=True, check=True, timeout=120,
        )  # fmt: skip
        out = subprocess.run(
            ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-m", "bench.filter_cost",
             "--child", str(ports), "--runs", str(runs)],
            check=True, capture_output=True, text=True, timeout=600,
        ).stdout  # fmt: skip
        found: dict[str, Any] = json.loads(out)
        return found
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ports", type=int, nargs="+", default=[0, 50, 250])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.runs)))
        return
    results = [run_in_namespace(n, args.runs) for n in args.ports]
    keys = list(results[0])
    print("  ".join(f"{k:>24}" for k in keys))
    for r in results:
        print("  ".join(f"{r[k]!s:>24}" for k in keys))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
