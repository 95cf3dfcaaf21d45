"""What collectors share: the host's readers, owned in one place, and per scheduler tick the
readings every collector of that tick may use.

Collectors dispatched at the same tick look at the host at the same moment, so one /proc scan,
one container list, one reading of the dockerd serving --docker.host and one reading of the
firewall (both backends' nat and filter rules) serve all of them: each is taken at most once per
tick, by whichever collector asks first, failures included (every collector then reports the
same reason). A reading of an earlier tick is never passed off as new. A collector that must
look again within its run (a confirming second reading) asks `host` for a fresh one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from exporter.changes import ChangeCounters
from exporter.readers.docker_api import (
    DEFAULT_DOCKER_HOST,
    DockerReader,
    DockerUnavailable,
    EngineFacts,
    timed_out,
)
from exporter.readers.dockerd import Dockerd, read_dockerd, serves_by_flags, serving
from exporter.readers.inventory import DockerInventory
from exporter.readers.netfilter import NetfilterReader, NetfilterReading
from exporter.readers.own_container import procfs_in_own_container
from exporter.readers.procfs import DaemonProcess, ProcessScan, ProcfsError, ProcfsReader, ProcStat


class Host:
    """The readers of one host that collectors share, and their caches; closed by its owner
    (the sampler), never by a collector."""

    def __init__(
        self,
        procfs: ProcfsReader,
        inventory: DockerInventory,
        docker_host: str = DEFAULT_DOCKER_HOST,
        netfilter: NetfilterReader | None = None,
    ) -> None:
        self.procfs = procfs
        self.inventory = inventory
        self.docker_host = docker_host
        # Full re-reads of change-driven collectors and lost events, for the exporter's health.
        self.changes = ChangeCounters()
        # The dockerd found serving docker_host last time, as (its stat then, it, argv):
        # while the same process lives (one stat read), no /proc scan is needed to find it.
        self._dockerd: tuple[ProcStat, DaemonProcess, tuple[str, ...]] | None = None
        self._dockerd_lock = threading.Lock()
        # /proc/sys/net and /proc/net/ip_tables_names are read from the same procfs.
        self.netfilter = netfilter or NetfilterReader(procfs.root)
        # Started without --pid=host and without the host's /proc, every verdict from /proc
        # would be about the exporter's own container: found once, refused at every scan.
        own = procfs_in_own_container(procfs.root)
        self.procfs_refused = (
            None
            if own is None
            else f"{procfs.root} shows the processes of the exporter's own container {own[:12]}, "
            "not the host's: run it in the host's PID namespace (--pid=host), or mount the "
            "host's /proc and name it (-v /proc:/host/proc:ro --path.procfs=/host/proc)"
        )

    @classmethod
    def open(
        cls,
        procfs: str = "/proc",
        docker_host: str = DEFAULT_DOCKER_HOST,
        inventory_timeout: float = 5.0,
        label_keys: tuple[str, ...] = (),
    ) -> Host:
        """This host's readers: /proc at `procfs`, the Engine API at `docker_host`."""
        return cls(
            ProcfsReader(procfs),
            DockerInventory(DockerReader(docker_host, inventory_timeout, label_keys)),
            docker_host,
        )

    def find_dockerd(self, scan: Callable[[], ProcessScan]) -> Dockerd | None:
        """The dockerd serving docker_host, read now; scan is asked only when the dockerd
        found last time is gone."""
        with self._dockerd_lock:
            if self._dockerd is not None and not self.procfs.same_process(self._dockerd[0]):
                self._dockerd = None
            if self._dockerd is not None:
                _, daemon, argv = self._dockerd
            else:
                found = serving(self.procfs, scan(), self.docker_host)
                if found is None:
                    return None
                daemon, stat, argv = found
                if stat is not None and serves_by_flags(argv, self.docker_host):
                    # Kept while it lives; the only dockerd, taken for want of a flag naming
                    # the socket, is looked for again (another may start and name it).
                    self._dockerd = (stat, daemon, argv)
        return read_dockerd(self.procfs.root, daemon, argv)

    def tick(self, at: float | None = None) -> Tick:
        return Tick(self, time.monotonic() if at is None else at)

    def close(self) -> None:
        self.inventory.close()
        self.netfilter.close()
        self.procfs.close()


class Tick:
    """The readings of one scheduler tick, each taken at most once."""

    def __init__(self, host: Host, at: float) -> None:
        self.host = host
        self.at = at
        self._scan_lock = threading.Lock()
        self._scan: ProcessScan | str | None = None
        self._engine_lock = threading.Lock()
        self._engine: EngineFacts | str | None = None
        # When the tick's container list was last known to be current (see engine()).
        self.engine_as_of: float | None = None
        self._netfilter_lock = threading.Lock()
        self._netfilter: NetfilterReading | None = None
        self._dockerd_lock = threading.Lock()
        self._dockerd: Dockerd | str | None = None
        self._dockerd_read = False

    def proc_scan(self) -> ProcessScan:
        """The tick's pass over the process table."""
        with self._scan_lock:
            if self._scan is None and self.host.procfs_refused is not None:
                self._scan = self.host.procfs_refused
            if self._scan is None:
                try:
                    self._scan = self.host.procfs.scan()
                except ProcfsError as exc:
                    self._scan = str(exc)
            if isinstance(self._scan, str):
                raise ProcfsError(self._scan)
            return self._scan

    def netfilter(self) -> NetfilterReading:
        """The tick's reading of both firewall backends (the nat and firewall collectors')."""
        with self._netfilter_lock:
            if self._netfilter is None:
                self._netfilter = self.host.netfilter.read()
            return self._netfilter

    def netfilter_again(self) -> NetfilterReading:
        """The firewall as it is now, for a confirming second look later in a run; what it
        finds is the tick's reading from then on."""
        with self._netfilter_lock:
            self._netfilter = self.host.netfilter.read()
            return self._netfilter

    def dockerd(self) -> Dockerd | None:
        """The tick's reading of the dockerd serving --docker.host (its flags, its daemon.json);
        None when no dockerd serves it. Raises ProcfsError when /proc could not be scanned."""
        with self._dockerd_lock:
            if not self._dockerd_read:
                try:
                    self._dockerd = self.host.find_dockerd(self.proc_scan)
                except ProcfsError as exc:
                    self._dockerd = str(exc)
                self._dockerd_read = True
            if isinstance(self._dockerd, str):
                raise ProcfsError(self._dockerd)
            return self._dockerd

    def engine(self, wait: float | None = None) -> EngineFacts:
        """The tick's container and network lists (listed again only when dockerd's event log
        says something changed). With wait, gives up after that long waiting for another
        collector's call: a daemon that stopped answering holds that call to its own timeout."""
        return self._answer(wait, again=False)

    def engine_again(self, wait: float | None = None) -> EngineFacts:
        """The lists as they are now, the event log asked again: for a confirming second look
        later in a run. What it finds is the tick's answer from then on."""
        return self._answer(wait, again=True)

    def _answer(self, wait: float | None, again: bool) -> EngineFacts:
        if not self._engine_lock.acquire(timeout=-1 if wait is None else wait):
            raise DockerUnavailable(timed_out(self.host.inventory.base_url))
        try:
            if again or self._engine is None:
                self._engine = self._ask(wait)
            if isinstance(self._engine, str):
                raise DockerUnavailable(self._engine)
            return self._engine
        finally:
            self._engine_lock.release()

    def last_engine(self) -> EngineFacts | None:
        """The last lists taken, without asking dockerd anything: for a first look that only
        decides what to look at again."""
        return self.host.inventory.last()

    def _ask(self, wait: float | None) -> EngineFacts | str:
        try:
            facts = self.host.inventory.current(self._dockerds, wait=wait)
        except DockerUnavailable as exc:
            return str(exc)  # the reason, not the exception: its traceback holds a socket
        checked = self.host.inventory.last_checked()
        self.engine_as_of = checked[1] if checked is not None else None
        return facts

    def _dockerds(self) -> frozenset[tuple[int, float]]:
        """The dockerd processes running, by (pid, start time); empty if /proc says nothing."""
        try:
            scan = self.proc_scan()
        except (ProcfsError, OSError):
            return frozenset()  # no /proc to watch: the event log and MAX_AGE still hold
        return frozenset((d.pid, d.start_time) for d in scan.daemons if d.name == "dockerd")
