"""Run inside a network namespace (nsenter --net=...): the filter chains and rules our readers
decode there, or one firewall-collector reading against a dockerd and the forward verdicts of given
ports, as JSON on stdout. The tests compare it with iptables -S, nft -j and the engine."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from exporter.collectors import by_name
from exporter.collectors.firewall.judge import filter_verdicts, forward_verdict, unmet_filter_rules
from exporter.collectors.firewall.source import FirewallSource
from exporter.collectors.nat.facts import NatFacts
from exporter.collectors.nat.source import NatSource
from exporter.metrics import Families, Renderer, Writer, render
from exporter.readers.docker_api import DockerReader
from exporter.readers.inventory import DockerInventory
from exporter.readers.iptables import TableBlob
from exporter.readers.nat_rules import NatCounters
from exporter.readers.netfilter import (
    NetfilterReader,
    NetfilterReading,
    NftCache,
    read_legacy_with_filter,
    read_nftables_with_filter,
)
from exporter.readers.netfilter_base import LegacyCache
from exporter.readers.nfnetlink import NftMessage, NftSocket
from exporter.readers.procfs import ProcfsReader
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Snapshot
from exporter.tick import Host

T = TypeVar("T")


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
    tables, the third after running `change` (a rule added to DOCKER-USER) a new decoding that
    has it, equal to a reading from scratch (another socket, no cache), its rules in other
    chains the first reading's very records (decoded once: FilterDecodes)."""
    sock, fresh_sock = NftSocket(), NftSocket()
    cache = NftCache()
    try:
        first = read_nftables_with_filter(sock, cache).filter
        second = read_nftables_with_filter(sock, cache).filter
        subprocess.run(change, check=True, timeout=60)
        third = read_nftables_with_filter(sock, cache).filter
        fresh = read_nftables_with_filter(fresh_sock).filter
    finally:
        sock.close()
        fresh_sock.close()
    decoded_once = {id(r) for r in first.rules}
    return {
        "reused": second is first,
        "rules": [len(first.rules), len(third.rules)],
        "third_is_fresh": third is not first,
        "third_as_from_scratch": third == fresh,
        "kept_elsewhere": [id(r) in decoded_once for r in third.rules if r.chain != "DOCKER-USER"],
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


def _send(address: str, port: int, datagrams: int) -> None:
    """UDP datagrams to a local address, each from a socket of its own (a new conntrack entry:
    the nat rules see it). DNATed to an address with no route, they go no further."""
    for _ in range(datagrams):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto(b"x", (address, port))


class _CountingSocket(NftSocket):
    """Counts the chain dumps: one per reading that decodes the rules."""

    chain_dumps = 0

    def chains(self, family: int = 0) -> list[NftMessage]:
        self.chain_dumps += 1
        return super().chains(family)


class _CountingLegacyCache(LegacyCache):
    """Counts the legacy tables decoded."""

    decoded = 0

    def made(self, name: str, table: TableBlob, make: Callable[[TableBlob], T]) -> T:
        def counting(blob: TableBlob) -> T:
            self.decoded += 1
            return make(blob)

        return super().made(name, table, counting)


def counted(address: str, port: int, change: list[str]) -> dict[str, Any]:
    """Three samples of the nat and firewall sources through one reader: the second after
    traffic through the DNAT rule of `port` (its counters moved, nothing else), the third after
    running `change` (a rule inserted). Each sample rendered through one Renderer, as the
    exporter renders, and from scratch."""
    reader = NetfilterReader("/proc")
    sock = reader._nft = _CountingSocket()  # the reader's own socket, watched
    legacy = reader._legacy = _CountingLegacyCache()
    host = Host(
        ProcfsReader("/proc"),
        DockerInventory(DockerReader("unix:///nowhere", 1.0)),
        netfilter=reader,
    )
    nat, fw = NatSource(timeout=10.0), FirewallSource("/proc", timeout=10.0)
    collectors = by_name()
    writers = [w for name in ("nat", "firewall") for w in collectors[name].writers(Settings())]
    runs = {id(w.write): 0 for w in writers}

    def counting(writer: Writer) -> Writer:
        def write(snapshot: Snapshot, out: Families) -> None:
            runs[id(writer.write)] += 1
            writer.write(snapshot, out)

        return Writer(write)

    renderer = Renderer([counting(w) for w in writers])
    samples, equal, decoded = [], [], []
    try:
        snapshot = Snapshot()
        for step in range(3):
            if step == 1:
                _send(address, port, 3)
            elif step == 2:
                subprocess.run(change, check=True, timeout=60)
            tick = host.tick()
            sampled, fw_facts = nat.read(tick), fw.read(tick)
            samples.append((sampled, fw_facts))
            decoded.append((sock.chain_dumps, legacy.decoded))
            for name, facts, counters in (
                ("nat", sampled.facts, sampled.counters),
                ("firewall", fw_facts, None),
            ):
                state = CollectorState(name, True, 0.01, 1.0, facts, counters=counters)
                snapshot = snapshot.with_state(state)
            scratch = render(
                snapshot, [collectors[n].write_all(Settings()) for n in ("nat", "firewall")]
            )
            equal.append(renderer.render(snapshot) == scratch)
        fresh = NetfilterReader("/proc").read()
    finally:
        host.close()
    (first, fw1), (second, fw2), (third, _) = samples
    assert isinstance(first.facts, NatFacts) and isinstance(third.facts, NatFacts)
    assert isinstance(first.counters, NatCounters) and isinstance(second.counters, NatCounters)
    moved = [
        rule.dport
        for rule, before, after in zip(
            first.facts.rules, first.counters.packets, second.counters.packets, strict=True
        )
        if after != before
    ]
    return {
        "same_nat_facts": second.facts is first.facts,
        "same_firewall_facts": fw2 is fw1,
        "moved": moved,
        "third_is_fresh": third.facts is not first.facts,
        "third_rules": sorted(r.dport or 0 for r in third.facts.rules),
        "third_as_from_scratch": (third.facts.rules, third.counters)
        == (fresh.nat_rules, fresh.nat_counters),
        "writer_runs": [runs[id(w.write)] for w in writers],
        "rules_decoded": decoded,
        "renders_as_from_scratch": equal,
    }


if __name__ == "__main__":
    if sys.argv[1] == "decoded":
        print(json.dumps(decoded()))
    elif sys.argv[1] == "cached":
        print(json.dumps(cached(sys.argv[2:])))
    elif sys.argv[1] == "shared":
        print(json.dumps(shared()))
    elif sys.argv[1] == "counted":
        print(json.dumps(counted(sys.argv[2], int(sys.argv[3]), sys.argv[4:])))
    elif sys.argv[1] == "judged":
        print(json.dumps(judged(sys.argv[2], sys.argv[3:])))
