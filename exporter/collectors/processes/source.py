"""The processes collector's source: the tick's /proc scan, read on for each containerd shim's
container (its PID 1 and namespaces), and each shim held against the tick's container list."""

from __future__ import annotations

import logging
from dataclasses import replace

from exporter.collectors import Source
from exporter.collectors.containers.facts import NAME as CONTAINERS
from exporter.collectors.processes.facts import NAME, ProcessCounters, ProcessFacts, ShimFacts
from exporter.collectors.processes.options import RESYNC_INTERVAL
from exporter.logonce import ChangeLog
from exporter.readers.docker_api import DockerUnavailable
from exporter.readers.procfs import (
    DEFAULT_RESYNC_INTERVAL,
    NamespaceLink,
    ProcessScan,
    ProcfsReader,
    ProcStat,
    ShimCommand,
    changed_shims,
    descendants,
)
from exporter.settings import Settings
from exporter.snapshot import Sampled
from exporter.tick import Tick

log = logging.getLogger(__name__)


class ProcessTable:
    def __init__(
        self,
        engine_wait: float,
        judge_shims: bool = True,
        resync_interval: float = DEFAULT_RESYNC_INTERVAL,
    ) -> None:
        # /proc is read whether or not the Engine API answers: at most this long for it.
        self.engine_wait = engine_wait
        # Shims are held against Docker's container list only while the containers collector
        # runs: without it, this collector reads /proc alone and asks the Engine API nothing.
        self.judge_shims = judge_shims
        self.resync_interval = resync_interval
        self._log = ChangeLog(log)
        # The shims as of the scan they were built from (listed left None): a scan that found
        # nothing changed is the same object, and so are these.
        self._scan: ProcessScan | None = None
        self._shims: tuple[ShimFacts, ...] = ()
        self._facts: ProcessFacts | None = None
        self._counters = ProcessCounters(0)
        self._by_shim: dict[tuple[int, int, str], ShimFacts] = {}
        # (shim as built, it with `listed` set) by (container id, listed): kept while it is the
        # same shim, so an unchanged answer is an unchanged object.
        self._answered: dict[tuple[str, bool], tuple[ShimFacts, ShimFacts]] = {}

    def read(self, tick: Tick) -> Sampled:
        return Sampled(*self.sample(tick))

    def sample(self, tick: Tick) -> tuple[ProcessFacts, ProcessCounters]:
        """read(), typed: the facts, and what the scan counted (apart: see ProcessCounters).
        Each is the same object as last time while it is unchanged."""
        procfs = tick.host.procfs
        # The host's reader follows the kernel's process events for every collector: this
        # collector's flag sets how often it reads everything again all the same.
        procfs.resync_interval = self.resync_interval
        scan = tick.proc_scan()
        listing = self._listing(tick) if self.judge_shims else None
        host_namespaces = procfs.host_namespaces()
        if scan is not self._scan:
            # Only the shims with a process that changed below them are built again.
            dirty = changed_shims(self._scan, scan)
            by_shim = {}
            for stat, command in scan.shims:
                key = (stat.pid, stat.start_ticks, command.container_id)
                kept = self._by_shim.get(key)
                if kept is None or dirty is None or stat.pid in dirty:
                    kept = self._shim(procfs, scan, stat, command)
                by_shim[key] = kept
            self._by_shim = by_shim
            built = list(by_shim.values())
            self._shims = tuple(sorted(built, key=lambda s: s.container_id))
            self._scan = scan
            live = {shim.container_id for shim in built}
            self._answered = {k: v for k, v in self._answered.items() if k[0] in live}
            refused = sorted({kind for shim in built for kind in shim.unreadable_namespaces})
            self._log.update(
                "refused",
                ",".join(refused) or None,
                "cannot read containers' namespaces: needs CAP_SYS_PTRACE (and root)",
                "containers' namespaces are readable again",
                procfs=str(procfs.root),
            )
        shims = tuple(self._listed(shim, listing) for shim in self._shims)
        daemons = tuple(sorted(scan.daemons, key=lambda d: (d.name, d.pid)))
        if self._counters.processes_scanned != len(scan.table):
            self._counters = ProcessCounters(len(scan.table))
        facts = self._facts
        if (
            facts is None
            or facts.shims != shims  # the same objects when nothing changed: compared by `is`
            or facts.host_namespaces != host_namespaces
            or facts.daemons != daemons
        ):
            facts = self._facts = ProcessFacts(host_namespaces, shims, daemons)
        # The same objects while unchanged: the renderer skips the writers.
        return facts, self._counters

    def _listed(self, shim: ShimFacts, listing: tuple[frozenset[str], float] | None) -> ShimFacts:
        """The shim held against Docker's container list. A list current only as of before the
        shim started cannot say its container is gone: the two readings sample different
        moments. The same object as last time for the same answer."""
        listed = None
        if listing is not None and shim.shim_start_time < listing[1]:
            listed = shim.container_id in listing[0]
        if listed is None:
            return shim
        kept = self._answered.get((shim.container_id, listed))
        if kept is None or kept[0] is not shim:
            kept = (shim, replace(shim, listed=listed))
            self._answered[(shim.container_id, listed)] = kept
        return kept[1]

    def _listing(self, tick: Tick) -> tuple[frozenset[str], float] | None:
        """The container ids Docker lists, and the moment that list was known to be current:
        the tick's, else the last one that was. None when there has never been one."""
        try:
            engine = tick.engine(self.engine_wait)
        except DockerUnavailable:
            pass
        else:
            if tick.engine_as_of is not None:
                return frozenset(c.id for c in engine.containers), tick.engine_as_of
        last = tick.host.inventory.last_checked()
        if last is None:
            return None
        return frozenset(c.id for c in last[0].containers), last[1]

    @staticmethod
    def _shim(
        procfs: ProcfsReader, scan: ProcessScan, shim: ProcStat, command: ShimCommand
    ) -> ShimFacts:
        tree = descendants(shim.pid, scan.children)
        pid1 = procfs.pid1(scan, shim)
        namespaces: tuple[NamespaceLink, ...] = ()
        refused: tuple[str, ...] = ()
        if pid1 is not None:
            read = procfs.namespaces_of(pid1)
            if read is None:
                # PID 1 exited (or its pid was reused) while we read it: the container is
                # stopping; report the shim without a PID 1 rather than another process's facts.
                pid1 = None
            else:
                namespaces, refused = read
        return ShimFacts(
            shim_pid=shim.pid,
            shim_start_time=scan.clock.to_unix(shim.start_ticks),
            container_id=command.container_id,
            runtime_namespace=command.runtime_namespace,
            pid1=pid1.pid if pid1 else None,
            pid1_start_time=scan.clock.to_unix(pid1.start_ticks) if pid1 else None,
            namespaces=namespaces,
            unreadable_namespaces=refused,
            processes=len(tree),
            zombies=sum(1 for p in tree if p.state == "Z"),
        )

    def close(self) -> None:
        """The procfs reader is the host's: its owner closes it."""


def build(settings: Settings) -> Source:
    return ProcessTable(
        engine_wait=settings.call_timeout(NAME),
        judge_shims=CONTAINERS in settings.collectors,
        resync_interval=settings[RESYNC_INTERVAL],
    )
