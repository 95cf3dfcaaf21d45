"""Run inside a network namespace (nsenter --net=...): the filter chains and rules our readers
decode there, or one firewall-collector reading against a dockerd and the forward verdicts of given
ports, as JSON on stdout. The tests compare it with iptables -S, nft -j and the engine."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

from exporter.collectors.firewall.judge import filter_verdicts, forward_verdict, unmet_filter_rules
from exporter.collectors.firewall.source import FirewallSource
from exporter.collectors.nat.facts import NatFacts
from exporter.collectors.nat.source import NatSource
from exporter.readers.docker_api import DockerReader
from exporter.readers.inventory import DockerInventory
from exporter.readers.netfilter import (
    NetfilterReader,
    NetfilterReading,
    NftCache,
    read_legacy_with_filter,
    read_nftables_with_filter,
)
from exporter.readers.nfnetlink import NftSocket
from exporter.readers.procfs import ProcfsReader
from exporter.tick import Host


def decoded() -> dict[str, Any]:
    sock = NftSocket()
    try:
        nft = read_nftables_with_filter(sock).filter
    finally:
        sock.close()
    legacy = read_legacy_with_filter("/proc").filter
    return {
        "chains": [dataclasses.asdict(c) for c in nft.chains + legacy.chains],
        "rules": [dataclasses.asdict(r) for r in nft.rules + legacy.rules],
    }


def cached(change: list[str]) -> dict[str, Any]:
    """Three readings through one NftCache: the second (nothing changed) must be the first's
    tables, the third after running `change` (a rule added) a new decoding that has it."""
    sock = NftSocket()
    cache = NftCache()
    try:
        first = read_nftables_with_filter(sock, cache).filter
        second = read_nftables_with_filter(sock, cache).filter
        subprocess.run(change, check=True, timeout=60)
        third = read_nftables_with_filter(sock, cache).filter
    finally:
        sock.close()
    return {
        "reused": second is first,
        "rules": [len(first.rules), len(third.rules)],
        "third_is_fresh": third is not first,
    }


def judged(docker_host: str, ports: list[str]) -> dict[str, Any]:
    """ports: "family,address,port,protocol,bridge" each."""
    host = Host.open(docker_host=docker_host)
    source = FirewallSource("/proc", timeout=20.0)  # the host's dockerd: docker_host's
    try:
        facts = source.read(host.tick())
    finally:
        source.close()
        host.close()
    verdicts = {}
    for spec in ports:
        family, address, port, protocol, bridge = spec.split(",")
        verdict = forward_verdict(facts, family, address, int(port), protocol, bridge)
        verdicts[spec] = {"state": verdict.state, "reason": verdict.reason}
    return {
        "missing": [
            [e.family, e.network, e.container, e.rule] for e, gone in filter_verdicts(facts) if gone
        ],
        "expected": [[e.family, e.network, e.container, e.rule] for e, _ in filter_verdicts(facts)],
        "unmet_now": list(unmet_filter_rules(facts)),
        "verdicts": verdicts,
        "managed": [facts.docker_iptables, facts.docker_iptables_from],
    }


class _CountingReader(NetfilterReader):
    """The real reader, counting its readings."""

    reads = 0

    def read(self) -> NetfilterReading:
        self.reads += 1
        return super().read()


def shared() -> dict[str, Any]:
    """The nat and firewall sources on one tick, then both again on a second: how many
    readings of the firewall each tick took, and what each collector found in it. No Engine
    API (nothing is expected, so nothing is read twice to confirm)."""
    reader = _CountingReader("/proc")
    host = Host(
        ProcfsReader("/proc"),
        DockerInventory(DockerReader("unix:///nowhere", 1.0)),
        netfilter=reader,
    )
    nat, fw = NatSource(timeout=10.0), FirewallSource("/proc", timeout=10.0)
    reads, found = [], []
    try:
        for at in (1.0, 2.0):
            tick = host.tick(at)
            nat_facts, fw_facts = nat.read(tick).facts, fw.read(tick)
            assert isinstance(nat_facts, NatFacts)
            reads.append(reader.reads)
            found.append(
                {
                    "same_backends": nat_facts.backends is fw_facts.backends,
                    "nat_rules": len(nat_facts.rules),
                    "filter_rules": len(fw_facts.filter_rules),
                }
            )
    finally:
        host.close()
    return {"reads": reads, "found": found}


if __name__ == "__main__":
    if sys.argv[1] == "decoded":
        print(json.dumps(decoded()))
    elif sys.argv[1] == "cached":
        print(json.dumps(cached(sys.argv[2:])))
    elif sys.argv[1] == "shared":
        print(json.dumps(shared()))
    elif sys.argv[1] == "judged":
        print(json.dumps(judged(sys.argv[2], sys.argv[3:])))
