"""The ports collector's source: for the running containers that publish ports (the tick's
container list), the sockets taking new traffic in each one's network namespace (through its
PID 1's /proc/PID/net, nothing entered), the docker-proxy processes of the tick's /proc scan,
and the --userland-proxy setting of the dockerd serving --docker.host (the tick's reading);
when something looks broken, a second reading a moment later, of the suspects only, to confirm
it. A container's listeners are read again when a change is likely, else on a cadence
(cadence.py); the others keep their last reading."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from exporter.collectors import Source
from exporter.collectors.confirm import confirm_wait, read_twice
from exporter.collectors.ports import cadence
from exporter.collectors.ports.facts import NAME, ContainerListeners, PortsFacts
from exporter.collectors.ports.judge import listener_key, suspect_keys
from exporter.collectors.ports.options import LISTENER_REFRESH
from exporter.logonce import ChangeLog
from exporter.readers.docker_api import (
    RUNNING_STATES,
    ContainerRecord,
    DockerNetwork,
    DockerUnavailable,
)
from exporter.readers.proc_net import (
    BoundSocket,
    ProcNetError,
    ProcNetUnreadable,
    ProxyProcess,
    bound_socket_inodes,
    held_sockets,
    parse_proxy_argv,
)
from exporter.readers.procfs import (
    DOCKER_RUNTIME_NAMESPACE,
    ProcessScan,
    ProcfsError,
    ProcfsReader,
    ProcStat,
)
from exporter.settings import Settings
from exporter.tick import Tick

log = logging.getLogger(__name__)

_PROXY_COMM = "docker-proxy"
# At most this many cadence turns in a row are answered by the listeners' sockets still being
# held (proc_net.held_sockets) before /proc/PID/net is read again: a listener shut down while
# its descriptor stays open (shutdown(2), no server does it) shows within HELD_TURNS refreshes.
HELD_TURNS = 3
# A process of a container, as the source tells a change: pid, start time, comm, a zombie.
_Process = tuple[int, int, str, bool]


@dataclass(frozen=True)
class _Kept:
    """A container's last listener reading, kept until it is read again."""

    listeners: ContainerListeners
    confirmed: frozenset[str]  # its listener keys missing in both readings of that run
    run: int  # the source's run that read it (or found it still held): the stalest first
    ipv6_first: frozenset[str]  # protocols whose wanted ports were found in the IPv6 file
    # The inodes of the sockets on its wanted ports, when every wanted port had one (else
    # empty: nothing to look for), and how many times in a row they were found still held
    # instead of a reading.
    inodes: frozenset[int] = frozenset()
    held: int = 0


class PortsSource:
    def __init__(
        self,
        timeout: float,
        refresh_runs: int = 16,
        confirm_after: float = 1.0,
        watch_rules: bool = True,
    ) -> None:
        # A port is set up in steps (dockerd starts docker-proxy, the application its
        # listener); look again before calling one broken, within a quarter of the timeout.
        self.confirm_after = confirm_wait(confirm_after, timeout)
        self.engine_wait = timeout / 2
        # Every container's listeners are read at least once in this many runs.
        self.refresh_runs = refresh_runs
        # Whether the tick's firewall reading tells which containers' rules changed: only when
        # nat or firewall read it at the same ticks anyway (a reading of its own costs more
        # than it saves).
        self.watch_rules = watch_rules
        self._log = ChangeLog(log)
        # docker-proxy and dockerd command lines by (pid, start time, comm): they never change.
        self._argv: dict[tuple[int, int, str], tuple[str, ...]] = {}
        self._proxy_of: dict[tuple[int, int, str], ProxyProcess | None] = {}
        self._proxies_found: tuple[ProxyProcess, ...] = ()  # what those processes serve
        # Listener readings by the container's PID 1 (container id, pid, start time).
        self._kept: dict[tuple[str, int, int], _Kept] = {}
        self._run = 0  # runs begun (a confirming second look is part of its run)
        self._started = False  # a run has read the container list (and so every container)
        self._read_run: dict[str, int] = {}  # the containers read this run
        # This run's inodes found for each container read, and its held count after it.
        self._inodes_run: dict[str, tuple[frozenset[int], int]] = {}
        # What the last run saw, to tell a change: each container's processes (its shim's
        # descendants), the records, the docker-proxies, the rules (as read, and their keys).
        self._processes: dict[str, frozenset[_Process]] = {}
        self._containers: tuple[ContainerRecord, ...] = ()
        self._proxies_seen: tuple[ProxyProcess, ...] = ()
        self._rules: tuple[tuple[object, ...], frozenset[cadence.RuleKey]] | None = None
        self._facts: PortsFacts | None = None  # returned last

    def close(self) -> None:
        """Nothing is held open between runs."""

    def read(self, tick: Tick) -> PortsFacts:
        procfs = tick.host.procfs
        first = self._read(tick, procfs, tick.proc_scan(), None)
        fresh = read_twice(
            first,
            suspect_keys,
            # The second look reads again only the containers whose listeners looked missing.
            lambda: self._read(tick, procfs, procfs.scan(confirming=True), suspect_keys(first)),
            lambda second, suspects: _confirmed(first, second, suspects),
            self.confirm_after,
        )
        facts = self._with_kept(fresh)
        if not self._started and fresh.containers is not None:
            # The first run reads every container: the one full reading the cadence starts from.
            tick.host.changes.reread(NAME, "start")
            self._started = True
        self._run += 1
        # Nothing changed: the very same facts, so the renderer's identity check skips the
        # ports writer (500 verdicts at 250 ports) without comparing them.
        if facts == self._facts:
            return self._facts
        self._facts = facts
        return facts

    def _with_kept(self, fresh: PortsFacts) -> PortsFacts:
        """The readings of this run kept, and the facts with every publishing container's last
        reading: the listener keys each one's own run confirmed missing are carried with it."""
        read_run, self._read_run = self._read_run, {}
        inodes_run, self._inodes_run = self._inodes_run, {}
        confirmed = set(fresh.earlier_suspects)
        by_id = {c.id: c for c in fresh.containers or ()}
        for read in fresh.listeners:
            container = by_id.get(read.container_id)
            if container is None:
                continue
            keys = {listener_key(container.id, p) for p in container.ports}
            self._kept[_identity(read)] = _Kept(
                read,
                frozenset(keys & confirmed),
                read_run.get(read.container_id, self._run),
                frozenset(
                    p.protocol
                    for p in container.ports
                    if any(
                        s.protocol == p.protocol and s.port == p.container_port and ":" in s.address
                        for s in read.sockets
                    )
                ),
                *inodes_run.get(read.container_id, (frozenset(), 0)),
            )
        if fresh.containers is None:
            return fresh
        # One reading per container, its latest (a restarted container's PID 1 is another).
        ids = {c.id for c in fresh.containers}
        latest: dict[str, tuple[tuple[str, int, int], _Kept]] = {}
        for identity, k in self._kept.items():
            if identity[0] in ids and (
                identity[0] not in latest or latest[identity[0]][1].run <= k.run
            ):
                latest[identity[0]] = (identity, k)
        self._kept = dict(latest.values())
        kept = sorted(self._kept.values(), key=lambda k: k.listeners.container_id)
        carried = {key for k in kept for key in k.confirmed}
        others = [k for k in fresh.earlier_suspects if not k.startswith("listener/")]
        return replace(
            fresh,
            listeners=tuple(k.listeners for k in kept),
            earlier_suspects=tuple(sorted(set(others) | carried)),
        )

    def _read(
        self,
        tick: Tick,
        procfs: ProcfsReader,
        scan: ProcessScan,
        suspects: tuple[str, ...] | None,
    ) -> PortsFacts:
        containers: tuple[ContainerRecord, ...] | None = None
        networks: tuple[DockerNetwork, ...] = ()
        error = None
        try:
            engine = (
                tick.engine(self.engine_wait)
                if suspects is None
                else tick.engine_again(self.engine_wait)
            )
            containers = tuple(
                c for c in engine.containers if c.state in RUNNING_STATES and c.ports
            )
            networks = engine.networks
        except DockerUnavailable as exc:
            error = str(exc)
        self._log.update(
            "docker",
            error,
            "no port verdicts: the Engine API is unreadable",
            "ports source reads the Engine API again",
        )
        live = {(p.pid, p.start_ticks, p.comm) for p in scan.table}
        self._argv = {k: v for k, v in self._argv.items() if k in live}
        proxies = self._proxies(procfs, scan)
        listeners = (
            self._listeners(tick, procfs, scan, containers, proxies=proxies, suspects=suspects)
            if containers is not None
            else ()
        )
        return PortsFacts(
            containers=containers,
            networks=networks,
            listeners=listeners,
            proxies=proxies,
            userland_proxy=_userland_proxy(tick),
        )

    def _command(self, procfs: ProcfsReader, process: ProcStat) -> tuple[str, ...]:
        identity = (process.pid, process.start_ticks, process.comm)
        argv = self._argv.get(identity)
        if argv is None:
            argv = procfs.cmdline(process.pid)
            if argv:  # empty for a zombie, or a process gone mid-read
                self._argv[identity] = argv
        return argv

    def _proxies(self, procfs: ProcfsReader, scan: ProcessScan) -> tuple[ProxyProcess, ...]:
        found = []
        live = {}
        for process in scan.table:
            if process.comm == _PROXY_COMM and process.state != "Z":
                identity = (process.pid, process.start_ticks, process.comm)
                if identity in self._proxy_of:
                    proxy = self._proxy_of[identity]
                else:
                    argv = self._command(procfs, process)
                    proxy = parse_proxy_argv(argv)
                    if not argv:  # gone mid-read: not kept, looked at again next run
                        continue
                live[identity] = proxy
                if proxy is not None:
                    found.append(proxy)
        if live.keys() != self._proxy_of.keys():
            self._proxies_found = tuple(sorted(set(found)))
        self._proxy_of = live  # a process's argv never changes: decoded once
        return self._proxies_found

    def _listeners(
        self,
        tick: Tick,
        procfs: ProcfsReader,
        scan: ProcessScan,
        containers: tuple[ContainerRecord, ...],
        *,
        proxies: tuple[ProxyProcess, ...],
        suspects: tuple[str, ...] | None,
    ) -> tuple[ContainerListeners, ...]:
        """A first pass reads the containers where a change is likely and those the cadence
        makes due (cadence.due); a second pass only the suspects."""
        # Only the shims of the containers that publish ports: their PID 1s are looked up
        # (a child's NSpid read once), not every container's at every run.
        publishing = {c.id for c in containers}
        shims = {
            command.container_id: shim
            for shim, command in scan.shims
            if command.container_id in publishing
            and command.runtime_namespace in ("", DOCKER_RUNTIME_NAMESPACE)
        }
        pid1s = {
            container_id: pid1
            for container_id, shim in shims.items()
            if (pid1 := procfs.pid1(scan, shim)) is not None
        }
        changed: frozenset[str] = frozenset()
        if suspects is not None:
            wanted = set(suspects)
            chosen = [
                c for c in containers if any(listener_key(c.id, p) in wanted for p in c.ports)
            ]
        else:
            changed = self._changed(tick, scan, containers, shims, proxies)
            due = cadence.due(
                {c.id: self._last_read(c.id, pid1s.get(c.id)) for c in containers},
                self._run,
                self.refresh_runs,
                changed,
            )
            chosen = [c for c in containers if c.id in due]
        found: list[ContainerListeners] = []
        refused = False
        for container in chosen:
            pid1 = pid1s.get(container.id)
            if pid1 is None:
                found.append(
                    ContainerListeners(container.id, 0, (), "no PID 1 found in /proc for it")
                )
                continue
            kept = self._kept.get((container.id, pid1.pid, pid1.start_ticks))
            self._read_run[container.id] = self._run
            if (
                suspects is None
                and kept is not None
                and container.id not in changed
                and self._still_held(procfs, kept, pid1, self._processes[container.id])
            ):
                self._inodes_run[container.id] = (kept.inodes, kept.held + 1)
                found.append(kept.listeners)
                continue
            read, inodes = self._container_listeners(
                procfs, container, pid1, kept.ipv6_first if kept else frozenset()
            )
            self._inodes_run[container.id] = (inodes, 0)
            refused = refused or read.refused
            found.append(read)
        self._log.update(
            "refused",
            "needs CAP_SYS_PTRACE" if refused else None,
            "cannot read containers' /proc/PID/net: listener hops unknown",
            "containers' /proc/PID/net readable again",
        )
        return tuple(found)

    def _changed(
        self,
        tick: Tick,
        scan: ProcessScan,
        containers: tuple[ContainerRecord, ...],
        shims: dict[str, ProcStat],
        proxies: tuple[ProxyProcess, ...],
    ) -> frozenset[str]:
        """The containers whose processes, record or docker-proxies changed since the last
        run, or whose DNAT or forward rules did. What did not change costs little: the same
        records, proxies and rules are the same objects run after run (a tuple compares its
        items by identity first)."""
        changed: set[str] = set()
        if containers != self._containers:
            before = {c.id: c for c in self._containers}
            changed.update(c.id for c in containers if before.get(c.id) != c)
            self._containers = containers
        if proxies is not self._proxies_seen:
            moved = set(proxies) ^ set(self._proxies_seen)
            changed.update(cadence.proxied_containers(containers, moved))
            self._proxies_seen = proxies
        processes = {}
        for container in containers:
            shim = shims.get(container.id)
            now = _descendants(scan, shim.pid) if shim is not None else frozenset()
            processes[container.id] = now
            if self._processes.get(container.id) != now:
                changed.add(container.id)
        self._processes = processes
        if self.watch_rules:
            reading = tick.netfilter()
            read = (reading.nat_rules, reading.filter.rules)
            # The same tuples (a reader that keeps them while nothing changed): the same keys.
            if self._rules is None or any(
                a is not b for a, b in zip(read, self._rules[0], strict=True)
            ):
                rules = cadence.rule_keys(reading)
                if self._rules is not None and rules != self._rules[1]:
                    changed |= cadence.touched(containers, self._rules[1], rules)
                self._rules = (read, rules)
        return frozenset(changed)

    @staticmethod
    def _still_held(
        procfs: ProcfsReader, kept: _Kept, pid1: ProcStat, processes: frozenset[_Process]
    ) -> bool:
        """The kept reading found every wanted port, and its sockets are still open in the
        container's processes (PID 1 first), unchanged since: it stands without a reading, up
        to HELD_TURNS times in a row."""
        if not kept.inodes or kept.held >= HELD_TURNS or kept.confirmed:
            return False
        pids = [pid1.pid, *sorted(p[0] for p in processes if not p[3] and p[0] != pid1.pid)]
        return held_sockets(str(procfs.root), pids, kept.inodes) == kept.inodes

    def _last_read(self, container_id: str, pid1: ProcStat | None) -> int | None:
        """The run that read the container last; None: never (or not its PID 1 of now)."""
        if pid1 is None:
            return None
        kept = self._kept.get((container_id, pid1.pid, pid1.start_ticks))
        return kept.run if kept is not None else None

    @staticmethod
    def _container_listeners(
        procfs: ProcfsReader,
        container: ContainerRecord,
        pid1: ProcStat,
        ipv6_first: frozenset[str],
    ) -> tuple[ContainerListeners, frozenset[int]]:
        """The reading, and the inodes of its sockets on the wanted ports when every wanted
        port has one (else none: then there is nothing to tell still held)."""
        found: list[tuple[BoundSocket, int]] = []
        try:
            for protocol in sorted({p.protocol for p in container.ports}):
                ports = [p.container_port for p in container.ports if p.protocol == protocol]
                found.extend(
                    bound_socket_inodes(
                        str(procfs.root), pid1.pid, protocol, ports, protocol in ipv6_first
                    )
                )
        except ProcNetUnreadable as exc:
            gone = "the container's PID 1 exited while read" if exc.gone else str(exc)
            return ContainerListeners(
                container.id, pid1.pid, (), gone, refused=not exc.gone
            ), frozenset()
        except ProcNetError as exc:
            return ContainerListeners(
                container.id, pid1.pid, (), f"undecodable: {exc}"
            ), frozenset()
        # A PID reused since the scan would show another namespace's sockets.
        if not procfs.same_process(pid1):
            return ContainerListeners(
                container.id, pid1.pid, (), "the container's PID 1 exited while read"
            ), frozenset()
        wanted = {(p.protocol, p.container_port) for p in container.ports}
        on_wanted = [(s, inode) for s, inode in found if (s.protocol, s.port) in wanted]
        inodes = frozenset(inode for _, inode in on_wanted if inode)
        every = wanted <= {(s.protocol, s.port) for s, _ in on_wanted}
        read = ContainerListeners(
            container.id,
            pid1.pid,
            tuple(sorted({s for s, _ in found})),
            start_ticks=pid1.start_ticks,
        )
        return read, inodes if every else frozenset()


def _userland_proxy(tick: Tick) -> bool | None:
    """--userland-proxy as the dockerd serving --docker.host resolves it (its flag, else its
    daemon.json, else on); None when that cannot be told."""
    try:
        dockerd = tick.dockerd()
    except ProcfsError:
        return None
    return dockerd.boolean("userland-proxy", default=True)[0] if dockerd is not None else None


def _descendants(scan: ProcessScan, pid: int) -> frozenset[_Process]:
    """The processes under pid (a container's shim: its PID 1 and what `docker exec` started)
    by (pid, start time, comm, exited): an exec in place changes comm, a restart the start
    time, and a process killed under a PID 1 that does not reap stays, a zombie."""
    found = []
    stack = [pid]
    while stack:
        for child in scan.children.get(stack.pop(), ()):
            found.append((child.pid, child.start_ticks, child.comm, child.state == "Z"))
            stack.append(child.pid)
    return frozenset(found)


def _identity(read: ContainerListeners) -> tuple[str, int, int]:
    return (read.container_id, read.pid, read.start_ticks)


def _confirmed(first: PortsFacts, second: PortsFacts, suspects: tuple[str, ...]) -> PortsFacts:
    """The second reading, told what the first suspected, with the first reading's listeners
    of the containers it did not read again."""
    again = {c.container_id for c in second.listeners}
    kept = tuple(c for c in first.listeners if c.container_id not in again)
    listeners = tuple(sorted(second.listeners + kept, key=lambda c: c.container_id))
    return replace(second, listeners=listeners, earlier_suspects=suspects)


def build(settings: Settings) -> Source:
    interval = settings.interval(NAME)
    return PortsSource(
        timeout=settings.timeout(NAME),
        refresh_runs=cadence.refresh_runs(settings[LISTENER_REFRESH], interval),
        watch_rules=any(
            c in settings.collectors and settings.interval(c) == interval
            for c in ("nat", "firewall")
        ),
    )
