"""What a run of the network collector costs on the host as it is: the source's read and the
render of the network's families, CPU in the sampling thread (time.thread_time), per run,
after a first run that fills the caches. Works on a tree from before the counters were kept
apart (its source returns bare facts), so the same script measures both sides:

    sudo .venv/bin/python -m bench.network_events --runs 60
    cd /work/main && sudo PYTHONPATH=. .venv/bin/python /path/to/bench/network_events.py

Nothing is created: run it with the containers you want measured already up (the dhe-bench
containers of bench.sample_cost). Interval between runs: --pause seconds (real traffic moves the
counters meanwhile).
"""

from __future__ import annotations

import argparse
import statistics
import time

from exporter.collectors import by_name
from exporter.collectors.network.facts import NetworkFacts
from exporter.metrics import Renderer
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Sampled, Snapshot
from exporter.tick import Host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--pause", type=float, default=0.2)
    args = parser.parse_args()
    settings = Settings()
    collectors = by_name()
    host = Host.open()
    network = collectors["network"].source(settings)
    containers = collectors["containers"].source(settings)
    writers = [w for name in ("network",) for w in collectors[name].writers(settings)]
    renderer = Renderer(writers)
    base = Snapshot().with_state(
        CollectorState("containers", True, 0.0, 0.0, facts=containers.read(host.tick()))
    )
    reads, renders, rereads = [], [], 0
    quiet_reads: list[float] = []  # runs that dumped no link (nothing notified)
    quiet_renders: list[float] = []
    reader = getattr(network, "reader", None)
    try:
        for run in range(args.runs + 1):
            tick = host.tick()
            tick.proc_scan()  # the tick's scan is shared with other collectors: not counted here
            dumps = getattr(reader, "dumps", None)
            t0 = time.thread_time()
            got = network.read(tick)
            t1 = time.thread_time()
            facts, counters = (got.facts, got.counters) if isinstance(got, Sampled) else (got, None)
            state = CollectorState("network", True, 0.0, 0.0, facts=facts, counters=counters)
            renderer.render(base.with_state(state))
            t2 = time.thread_time()
            if run:  # the first fills the caches
                reads.append((t1 - t0) * 1000)
                renders.append((t2 - t1) * 1000)
                if dumps is not None and getattr(reader, "dumps", None) == dumps:
                    quiet_reads.append(reads[-1])
                    quiet_renders.append(renders[-1])
            time.sleep(args.pause)
        changes = getattr(host, "changes", None)
        if changes is not None:
            rereads = sum(
                changes.rereads("network", r) for r in ("start", "resync", "lost_events", "error")
            )
    finally:
        network.close()
        containers.close()
        host.close()
    assert isinstance(facts, NetworkFacts)
    links = len(facts.links)
    veths = sum(1 for link in facts.links if link.kind == "veth")
    dumps = getattr(reader, "dumps", None)
    print(f"links {links} veths {veths} runs {args.runs} full re-reads {rereads} dumps {dumps}")
    report(reads, renders, quiet_reads, quiet_renders)
    dump_costs()


def report(
    reads: list[float], renders: list[float], quiet_reads: list[float], quiet_renders: list[float]
) -> None:
    for what, values in (
        ("read", reads),
        ("render", renders),
        ("read, runs without a dump", quiet_reads),
        ("render, runs without a dump", quiet_renders),
    ):
        if not values:
            continue
        print(
            f"{what}: {len(values)} runs, CPU ms/run mean {statistics.fmean(values):6.2f} "
            f"p50 {statistics.median(values):6.2f} max {max(values):6.2f}"
        )


def dump_costs(runs: int = 20) -> None:
    """A link dump (what a run that follows a change costs) against the counters dump (what
    every run costs), CPU in this thread. Only on a tree that has the counters dump."""
    from exporter.readers.netlink import RtnlSocket  # noqa: PLC0415

    sock = RtnlSocket()
    try:
        if not hasattr(sock, "link_stats"):
            return
        for name, call in (
            ("link dump, no counters", lambda: sock.dump_links(stats=False)),
            ("RTM_GETSTATS counters dump", sock.link_stats),
        ):
            t0 = time.thread_time()
            for _ in range(runs):
                call()
            print(f"{name}: CPU ms/call {(time.thread_time() - t0) / runs * 1000:6.2f}")
    finally:
        sock.close()


if __name__ == "__main__":
    main()
