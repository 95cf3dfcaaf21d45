"""CPU of the tick's /proc scan and the processes collector, following the kernel's process
events against reading every process each tick (main's way, and the fallback without
CAP_NET_ADMIN), in the same run, tick by tick in turn, on whatever runs on this host.

    sudo .venv/bin/python -m bench.proc_scan_cost --ticks 30 --interval 2

Each mode has its own Host and processes source, as an exporter would; per tick each is read
once (the order alternates), CPU by time.thread_time(). The shims are not held against Docker's
container list (no Engine API calls: the containers collector's cost is not this one's).
Reports the median and mean per tick, and /proc/PID/stat reads per tick. Traffic: none.
"""

from __future__ import annotations

import argparse
import statistics
import time

from exporter.collectors.processes.source import ProcessTable
from exporter.readers.docker_api import DockerReader
from exporter.readers.inventory import DockerInventory
from exporter.readers.procfs import ProcfsReader
from exporter.tick import Host


class Mode:
    def __init__(self, name: str, follow_events: bool) -> None:
        self.name = name
        self.reader = ProcfsReader(follow_events=follow_events)
        self.host = Host(self.reader, DockerInventory(DockerReader("unix:///nowhere", 0.1)))
        self.source = ProcessTable(0.1, judge_shims=False)
        self.scan_ms: list[float] = []
        self.total_ms: list[float] = []
        self.shims = 0
        self.processes = 0

    def sample(self, at: float, keep: bool) -> None:
        tick = self.host.tick(at)
        start = time.thread_time()
        scan = tick.proc_scan()
        scanned = time.thread_time()
        facts, _ = self.source.sample(tick)
        done = time.thread_time()
        if keep:
            self.scan_ms.append((scanned - start) * 1000)
            self.total_ms.append((done - start) * 1000)
        self.shims, self.processes = len(facts.shims), len(scan.table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between ticks")
    args = parser.parse_args()
    modes = [Mode("events", True), Mode("full scans", False)]
    reads = {m.name: 0 for m in modes}
    for i in range(args.ticks + 1):
        order = modes if i % 2 else modes[::-1]
        for mode in order:
            before = mode.reader.stats_reads
            mode.sample(float(i), keep=i > 0)  # the first tick is the start's full scan
            if i > 0:
                reads[mode.name] += mode.reader.stats_reads - before
        time.sleep(args.interval)
    assert modes[0].reader.follows_events, "the proc connector was refused: run as root"
    for m in modes:
        print(
            f"{m.name:10}  {m.shims} shims, {m.processes} processes: scan "
            f"{statistics.median(m.scan_ms):.2f} ms median ({statistics.mean(m.scan_ms):.2f} "
            f"mean), scan + processes {statistics.median(m.total_ms):.2f} ms median "
            f"({statistics.mean(m.total_ms):.2f} mean), {reads[m.name] / args.ticks:.0f} "
            "stat reads per tick"
        )
    for m in modes:
        m.host.close()


if __name__ == "__main__":
    main()
