"""What the nat, firewall and ports collectors cost per run at N published ports with traffic
moving the rules' counters (issue 24 item 2): Docker 20.10's filter and nat rules for N
containers publishing 80/tcp (bench/filter_cost.py's), loaded with iptables-nft into a network
namespace of the benchmark's own; each run sends a few connection attempts through some DNAT
rules (their counters move, nothing else), then one tick: the nat and firewall sources read
the firewall, and one Renderer renders nat's, firewall's and the ports' writers (the ports'
facts constructed, bench/port_verdicts_cost.py's). Thread CPU per run, split into the two
sources' reads and the render.

    python -m bench.rule_counters_cost --ports 250 --runs 60 --trees /tmp/main .

--trees: source trees to measure, alternated round by round (another checkout of the code,
say main's, against this one). Root; sends only within its namespace; the namespace goes when
it ends. The Engine API and dockerd are not asked: the tick gives the constructed containers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

LOCAL = "10.255.0.1"  # the namespace's own address: connections to it pass nat OUTPUT
JUMPS = """*nat
-I OUTPUT -m addrtype --dst-type LOCAL -j DOCKER
-I PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
COMMIT
"""


def child(ports: int, runs: int, moved_per_run: int) -> dict[str, Any]:
    """In the namespace, with the tree to measure first on sys.path."""
    from bench.port_verdicts_cost import facts  # noqa: PLC0415
    from exporter.collectors import by_name  # noqa: PLC0415
    from exporter.collectors.firewall.source import FirewallSource  # noqa: PLC0415
    from exporter.collectors.nat.source import NatSource  # noqa: PLC0415
    from exporter.metrics import Renderer  # noqa: PLC0415
    from exporter.readers.docker_api import DockerReader, EngineFacts  # noqa: PLC0415
    from exporter.readers.inventory import DockerInventory  # noqa: PLC0415
    from exporter.readers.netfilter import NetfilterReader  # noqa: PLC0415
    from exporter.readers.procfs import ProcfsReader  # noqa: PLC0415
    from exporter.settings import Settings  # noqa: PLC0415
    from exporter.snapshot import CollectorState, Snapshot  # noqa: PLC0415
    from exporter.tick import Host, Tick  # noqa: PLC0415

    ports_facts, _, _, network = facts(ports)
    engine = EngineFacts(ports_facts.containers or (), (), "1.41", ports_facts.networks)

    class BenchTick(Tick):
        def engine(self, wait: float | None = None) -> EngineFacts:
            return engine

        def engine_again(self, wait: float | None = None) -> EngineFacts:
            return engine

        def dockerd(self) -> None:
            return None

    host = Host(
        ProcfsReader("/proc"),
        DockerInventory(DockerReader("unix:///nowhere", 1.0)),
        netfilter=NetfilterReader("/proc"),
    )
    settings = Settings()
    nat, firewall = NatSource(timeout=10.0), FirewallSource("/proc", timeout=10.0)
    collectors = by_name()
    renderer = Renderer(
        [w for name in ("nat", "firewall", "ports") for w in collectors[name].writers(settings)]
    )
    snapshot = Snapshot()
    for name, given in (("ports", ports_facts), ("network", network)):
        snapshot = snapshot.with_state(CollectorState(name, True, 0.01, 1.0, given))
    reads, renders, confirmed = [], [], 0
    for run in range(runs + 3):  # three to fill the caches
        for k in range(moved_per_run):
            _connect(LOCAL, 20000 + (run * moved_per_run + k) % max(ports, 1))
        start = time.thread_time()
        tick = BenchTick(host, time.monotonic())
        sampled, fw_facts = nat.read(tick), firewall.read(tick)
        read = time.thread_time()
        nat_facts: Any = getattr(sampled, "facts", sampled)  # main's source: the facts
        counters = getattr(sampled, "counters", None)
        for name, found, counted in (("nat", nat_facts, counters), ("firewall", fw_facts, None)):
            state = CollectorState(name, True, 0.01, 1.0, found, counters=counted)
            snapshot = snapshot.with_state(state)
        renderer.render(snapshot)
        done = time.thread_time()
        confirmed += bool(nat_facts.earlier_missing or fw_facts.earlier_missing)
        if run >= 3:
            reads.append((read - start) * 1000)
            renders.append((done - read) * 1000)
    host.close()
    return {
        "ports": ports,
        "nat_rules": len(nat_facts.rules),
        "filter_rules": len(fw_facts.filter_rules),
        "runs": runs,
        "confirmed_runs": confirmed,  # runs whose sources slept for a second look: want 0
        "read_ms": round(statistics.mean(reads), 2),
        "render_ms": round(statistics.mean(renders), 2),
        "total_ms": round(statistics.mean(r + d for r, d in zip(reads, renders, strict=True)), 2),
    }


def _connect(address: str, port: int) -> None:
    """A TCP connection attempt: its SYN passes nat OUTPUT, is DNATed to a container address
    no route leads to, and goes no further."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.connect((address, port))


def in_namespace(tree: Path, ports: int, runs: int, moved: int) -> dict[str, Any]:
    from bench.filter_cost import ruleset  # noqa: PLC0415

    netns = f"dhe-co-bench-{uuid.uuid4().hex[:6]}"
    enter = ["nsenter", f"--net=/run/netns/{netns}"]
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=30)
    try:
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "address", "add", f"{LOCAL}/32", "dev", "lo"],
            ["sysctl", "-qw", "net.ipv4.ip_forward=1"],  # the namespace's own
        ):
            subprocess.run([*enter, *command], check=True, timeout=30)
        for text, extra in ((ruleset(ports), []), (JUMPS, ["--noflush"])):
            subprocess.run(
                [*enter, "iptables-nft-restore", *extra],
                input=text, text=True, check=True, timeout=120,
            )  # fmt: skip
        out = subprocess.run(
            [*enter, sys.executable, __file__, "--child", str(ports), "--runs", str(runs),
             "--moved", str(moved)],
            check=True, capture_output=True, text=True, timeout=1200,
            env={**os.environ, "PYTHONPATH": str(tree.resolve())}, cwd=tree,
        ).stdout  # fmt: skip
        found: dict[str, Any] = json.loads(out)
        return {"tree": str(tree), **found}
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=250)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--moved", type=int, default=5, help="DNAT rules hit before each run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trees", type=Path, nargs="+", default=[Path()])
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.runs, args.moved)))
        return
    keys = ("tree", "ports", "nat_rules", "filter_rules", "confirmed_runs", "read_ms",
            "render_ms", "total_ms")  # fmt: skip
    print("  ".join(f"{k:>14}" for k in keys))
    for _ in range(args.rounds):
        for tree in args.trees:
            found = in_namespace(tree, args.ports, args.runs, args.moved)
            print("  ".join(f"{found[k]!s:>14}" for k in keys), flush=True)


if __name__ == "__main__":
    main()
