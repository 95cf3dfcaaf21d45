"""What /topology costs at 250 containers: building and rendering the page once per snapshot,
its size, and serving it from the cache, the way every request but the first after a snapshot
is served.

The host is constructed (250 running containers on docker0 and five user networks, a published
port on every fifth, a namespace sharer on every 25th, a few orphaned veths, a missing
MASQUERADE rule), so the numbers do not depend on what else runs on the machine; the serving
part goes through the real HTTP server on loopback. No root, no engine.

    python -m bench.topology_cost [--containers 250] [--requests 1000]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import statistics
import time

from exporter.collectors.nat.facts import NatExpectations, NatFacts
from exporter.collectors.network.facts import NetworkFacts
from exporter.collectors.processes.facts import ProcessFacts, ShimFacts
from exporter.metrics import Exposition
from exporter.readers.docker_api import ContainerRecord, DockerNetwork, EngineFacts, PublishedPort
from exporter.readers.nat_rules import NatRule
from exporter.readers.netfilter_base import FirewallBackend
from exporter.readers.netlink import Link
from exporter.readers.network import ContainerNetns, PeerLink
from exporter.readers.procfs import NamespaceLink
from exporter.snapshot import CollectorState, Snapshot
from exporter.topology import TopologyPage, build, render_page
from exporter.web import landing_page, make_server, serve_in_background

NETWORKS = 6
HOST_NS = tuple(NamespaceLink(k, 4026531830 + i) for i, k in enumerate(("net", "pid", "mnt")))


def host_of(n: int) -> Snapshot:
    networks = [
        DockerNetwork(
            f"{i:064x}",
            "bridge" if i == 0 else f"net-{i}",
            "bridge",
            "docker0" if i == 0 else f"br-{i:012x}",
            (f"172.{17 + i}.0.0/16",),
            False,
            True,
            gateways=(f"172.{17 + i}.0.1",),
        )
        for i in range(NETWORKS)
    ]
    links = [
        Link(100 + i, net.bridge, "bridge", None, None, None, "up", None, False, None)
        for i, net in enumerate(networks)
    ]
    records, netns, peers, shims, rules = [], [], [], [], []
    for c in range(n):
        cid = f"{c + 1:064x}"
        net = c % NETWORKS
        address = f"172.{17 + net}.{c // 250}.{c % 250 + 2}"
        sharer = c % 25 == 24
        published = PublishedPort("tcp", "0.0.0.0", 10000 + c, 80)  # noqa: S104 - a record
        ports = (published,) if c % 5 == 0 else ()
        mode = f"container:{c:064x}" if sharer else ("default" if net == 0 else f"net-{net}")
        records.append(
            ContainerRecord(
                cid, f"service-{c}", "registry.example/app:1.2.3", "sha256:1", "running",
                mode, 0.0, ports=ports, addresses=() if sharer else (address,),
            )
        )  # fmt: skip
        inode = 4026540000 + (c - 1 if sharer else c)
        own = (NamespaceLink("net", inode), NamespaceLink("pid", 4026550000 + c))
        netns.append(ContainerNetns(cid, 20000 + c, inode, c - 1 if sharer else c))
        shims.append(ShimFacts(10000 + c, 0.0, cid, "moby", 20000 + c, 0.0, own, (), 1, 0, True))
        if not sharer:
            links.append(
                Link(1000 + c, f"veth{c:07x}", "veth", 100 + net, 2, c, "up", "forwarding",
                     None, None)
            )  # fmt: skip
            peers.append(PeerLink(c, 2, "eth0"))
        for p in ports:
            rules.append(
                NatRule("nftables", "nat", "DOCKER", "dnat", None, None, None, False, None,
                        False, "tcp", p.host_port, address, 80)
            )  # fmt: skip
    for i in range(3):  # orphans on docker0
        links.append(Link(9000 + i, f"vorph{i}", "veth", 100, 2, None, "down", "disabled",
                          None, None))  # fmt: skip
    for other in networks[1:]:  # docker0's MASQUERADE is missing
        rules.append(
            NatRule("nftables", "nat", "POSTROUTING", "masquerade", other.subnets[0], None, None,
                    False, other.bridge, True, None, None, None, None)
        )  # fmt: skip
    engine = EngineFacts(tuple(records), (), "1.41", tuple(networks))
    network = NetworkFacts(
        links=tuple(links),
        container_netns=tuple(netns),
        peers=tuple(peers),
        unreadable_netns=0,
        earlier_suspects=tuple((9000 + i, f"vorph{i}") for i in range(3)),
    )
    backend = FirewallBackend("nftables", True, None, len(rules), ("nat/DOCKER",))
    nat = NatFacts(
        (backend,),
        tuple(rules),
        NatExpectations(tuple(networks), tuple(records)),
        earlier_missing=("masquerade/bridge/172.17.0.0/16",),
    )
    procs = ProcessFacts(HOST_NS, tuple(shims), ())
    snapshot = Snapshot()
    for name, facts in (
        ("containers", engine),
        ("network", network),
        ("processes", procs),
        ("nat", nat),
    ):
        snapshot = snapshot.with_state(CollectorState(name, True, 0.01, time.time(), facts))
    return snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=250)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    snapshot = host_of(args.containers)

    renders = []
    for _ in range(7):
        cpu = time.process_time()
        page = render_page(build(snapshot, "bench", time.time()))
        renders.append((time.process_time() - cpu) * 1000)
    zipped = gzip.compress(page, compresslevel=6, mtime=0)
    print(f"containers: {args.containers}")
    print(f"render once per snapshot: median {statistics.median(renders):.1f} ms CPU")
    print(f"page: {len(page):,} bytes, {len(zipped):,} gzipped")

    cached = TopologyPage(lambda: snapshot, "bench")
    server = make_server(
        "127.0.0.1:0",
        "/metrics",
        lambda: Exposition(b""),
        lambda: True,
        landing_page("/metrics", [], topology=True),
        topology=cached.current,
    )
    serve_in_background(server)
    port = server.server_address[1]
    for label, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/topology", headers=headers)
        conn.getresponse().read()  # the first request after a snapshot renders
        latencies = []
        cpu = time.process_time()
        for _ in range(args.requests):
            started = time.perf_counter()
            conn.request("GET", "/topology", headers=headers)
            conn.getresponse().read()
            latencies.append((time.perf_counter() - started) * 1000)
        spent = (time.process_time() - cpu) * 1000 / args.requests
        conn.close()
        latencies.sort()
        print(
            f"served from the cache, {label}: p50 {latencies[len(latencies) // 2]:.2f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99)]:.2f} ms, {spent:.2f} ms CPU per "
            "request (server and this client together)"
        )
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
