"""/proc reader: the process table, containerd shims, their containers' PID 1 and namespaces.

Everything is read under an injectable procfs root (`--path.procfs`), so a recorded tree drives the
tests and a containerised exporter reads the host's /proc mounted elsewhere. PIDs vanish between
listing and reading and are reused: a process that disappears mid-read is skipped, and a process
is only trusted when its start time is the same before and after its namespaces were read.

The process table is kept between samples. Where the kernel's proc connector can be subscribed to
(exporter.readers.proc_events), a scan re-reads /proc/PID/stat only of the processes it says
forked, exec'd, were renamed or exited, of the exited ones' children (reparented without an
event of their own), and of the zombies known (reaped without one), and patches the last scan's
tree, shims and daemons where those changed; otherwise, after lost events, and every
resync_interval as a safety net, it lists /proc and reads every process again.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from exporter.memo import last_answer
from exporter.readers.proc_events import Changes, ProcEvents, ProcEventsUnavailable

# comm is cut to 15 bytes by the kernel: "containerd-shim-runc-v2" reads as "containerd-shim",
# and both "docker-containerd" and "docker-containerd-shim" (Docker < 18.09) as "docker-containe".


# The namespaces a container can have of its own, in the order `lsns` lists them.
NAMESPACE_KINDS: tuple[str, ...] = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")

# The containerd namespace Docker runs its containers in; shims of other namespaces (a
# Kubernetes node's "k8s.io", nerdctl's "default") are not Docker's to judge.
DOCKER_RUNTIME_NAMESPACE = "moby"


@dataclass(frozen=True)
class NamespaceLink:
    """A namespace as `/proc/PID/ns/<kind>` names it: kind and inode."""

    kind: str
    inode: int


@dataclass(frozen=True)
class DaemonProcess:
    """dockerd or containerd as /proc shows it."""

    name: str
    pid: int
    start_time: float


_SHIM_COMMS = ("containerd-shim", "docker-containe")
_DAEMON_NAMES = {
    "dockerd": "dockerd",
    "containerd": "containerd",
    "docker-containerd": "containerd",
}

_GONE = (errno.ENOENT, errno.ESRCH)
_BOOT_TIME_JITTER = 2.0  # seconds btime may move by without the clock having been set
_READ_SIZE = 4096

log = logging.getLogger(__name__)


class ProcfsError(Exception):
    """The process table itself cannot be read (not a single vanished process)."""


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    start_ticks: int


@dataclass(frozen=True)
class Clock:
    """Turns /proc start times (ticks since boot) into Unix time."""

    boot_time: float
    ticks_per_second: int

    def to_unix(self, ticks: int) -> float:
        return self.boot_time + ticks / self.ticks_per_second


def parse_stat(text: str) -> ProcStat:
    # comm may hold spaces and parentheses: it ends at the last ')'.
    open_paren = text.index("(")
    close_paren = text.rindex(")")
    fields = text[close_paren + 2 :].split()
    # fields[0] is field 3 of proc(5): state; ppid is field 4, starttime field 22.
    return ProcStat(
        pid=int(text[:open_paren]),
        comm=text[open_paren + 1 : close_paren],
        state=fields[0],
        ppid=int(fields[1]),
        start_ticks=int(fields[19]),
    )


def parse_boot_time(proc_stat_text: str) -> float:
    for line in proc_stat_text.splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ProcfsError("no btime line in /proc/stat")


def parse_nspid(status_text: str) -> tuple[int, ...]:
    for line in status_text.splitlines():
        if line.startswith("NSpid:"):
            return tuple(int(p) for p in line.split()[1:])
    return ()


def parse_namespace_link(target: str) -> NamespaceLink:
    # readlink gives "pid:[4026531836]"
    kind, _, rest = target.partition(":")
    return NamespaceLink(kind=kind, inode=int(rest.strip("[]")))


@dataclass(frozen=True)
class ShimCommand:
    container_id: str
    runtime_namespace: str


@dataclass(frozen=True)
class ProcessScan:
    """The process table as of one scan. A process's state is as of its last read: exact for
    "Z" (exit and reaping are followed), not for running/sleeping; kernel workers' names
    ("kworker/0:1-events", renamed after their work with no event) are as of their last read.
    A scan that found nothing changed is the very same object as the one before."""

    clock: Clock
    table: list[ProcStat]
    children: Mapping[int, list[ProcStat]]
    shims: list[tuple[ProcStat, ShimCommand]]
    daemons: list[DaemonProcess]
    # The table by pid, never changed once made: a process re-read is a new ProcStat, so what
    # changed between two scans is what is not the same object in both.
    by_pid: Mapping[int, ProcStat] = field(default_factory=dict)


def parse_shim_cmdline(argv: tuple[str, ...]) -> ShimCommand | None:
    """The container a shim holds, from its argv.

    shim v2 (containerd-shim-runc-v2) passes `-id <id>`; shim v1 (containerd-shim and
    docker-containerd-shim) passes only `-workdir .../<namespace>/<id>`.
    """
    if not argv or "containerd-shim" not in _basename(argv[0]):
        return None
    options: dict[str, str] = {}
    for flag, value in itertools.pairwise(argv[1:]):
        if flag.startswith("-"):
            options[flag.lstrip("-")] = value
    container_id = options.get("id") or _basename(options.get("workdir", ""))
    if not container_id:
        return None
    return ShimCommand(container_id=container_id, runtime_namespace=options.get("namespace", ""))


# Arguments that make dockerd or containerd print, check or send something and exit: such a
# process serves nothing. A shim runs `containerd ... publish --topic ...` on every task event,
# and `dockerd --version` is what tools run; counted as daemons, they made "the only dockerd"
# ambiguous and the daemon counts flap.
_ONE_SHOT_ARGS = frozenset(
    {"-v", "--version", "-h", "--help", "--validate", "publish", "config", "oci-hook", "help"}
)


def daemon_name(argv: tuple[str, ...]) -> str | None:
    """The daemon this command line runs, if it runs one (not a one-shot of its binary)."""
    if not argv or _ONE_SHOT_ARGS.intersection(argv[1:]):
        return None
    return _DAEMON_NAMES.get(_basename(argv[0]))


def _basename(path: str) -> str:
    return path.rstrip("/").rpartition("/")[2]


@dataclass(frozen=True)
class Mount:
    """One line of a /proc/PID/mountinfo: what is mounted (its root within its filesystem),
    where, of which type, and the filesystem's own options."""

    root: str
    mount_point: str
    fstype: str
    super_options: str


_OCTAL = re.compile(r"\\([0-7]{3})")
_NAMESPACE = re.compile(r"([a-z_]+):\[(\d+)\]")


def parse_mountinfo(text: str) -> Iterator[Mount]:
    """A line is `id parent major:minor root mount-point options [optional...] - fstype source
    super-options`; paths are octal-escaped (a space is \\040)."""
    for line in text.splitlines():
        fields, separator, rest = line.partition(" - ")
        parts, extra = fields.split(), rest.split()
        if not separator or len(parts) < 5 or not extra:
            continue
        yield Mount(
            root=_unescape(parts[3]),
            mount_point=_unescape(parts[4]),
            fstype=extra[0],
            super_options=extra[2] if len(extra) > 2 else "",
        )


def _unescape(path: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m[1], 8)), path)


def namespace_inode(target: str, kind: str) -> int | None:
    """The inode of a namespace of this kind as nsfs names it (`net:[4026532XXX]`: a
    /proc/PID/ns link, or an nsfs mount's root); None for anything else."""
    match = _NAMESPACE.fullmatch(target)
    return int(match[2]) if match is not None and match[1] == kind else None


def hidepid_option(
    procfs: str | Path, mountinfo: Path = Path("/proc/self/mountinfo")
) -> str | None:
    """The hidepid= option of the procfs mounted at `procfs`, if it hides anything."""
    mount_point = os.path.realpath(procfs)
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    found = None
    for mount in parse_mountinfo("\n".join(lines)):
        if mount.mount_point == mount_point and mount.fstype == "proc":
            found = mount.super_options  # the last mount on a point is the one seen
    for option in (found or "").split(","):
        if option.startswith("hidepid=") and option not in ("hidepid=0", "hidepid=off"):
            return option
    return None


def choose_pid1(children: Iterable[ProcStat], nspids: Mapping[int, tuple[int, ...]]) -> int | None:
    """The container's PID 1 among a shim's children.

    `docker exec` sessions are children of the shim too. PID 1 is the child that is 1 in its own
    PID namespace; with --pid=host or --pid=container:X no child is, and the container's init is
    then the oldest child.
    """
    candidates = sorted(children, key=lambda s: (s.start_ticks, s.pid))
    for stat in candidates:
        inner = nspids.get(stat.pid, ())
        if len(inner) > 1 and inner[-1] == 1:
            return stat.pid
    return candidates[0].pid if candidates else None


def descendants(root: int, children: Mapping[int, list[ProcStat]]) -> list[ProcStat]:
    found: list[ProcStat] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child.pid)
    return found


@last_answer
def changed_shims(old: ProcessScan | None, new: ProcessScan) -> frozenset[int] | None:
    """The shims (by pid) with a process below them, or themselves, that changed between two
    scans: a process re-read is a new object, so what a reader built from a shim's processes
    stands for every other shim. None: every shim (no scan before, another clock). Answered
    once for the network reader and the processes collector, which ask it of the same two
    scans when a container came or went (two passes over the whole table each)."""
    if old is None or old.clock != new.clock:
        return None
    changed = [pid for pid, stat in new.by_pid.items() if old.by_pid.get(pid) is not stat]
    changed += [pid for pid in old.by_pid if pid not in new.by_pid]
    shims = {stat.pid for stat, _ in new.shims}
    dirty: set[int] = set()
    for pid in changed:
        # Up the tree as it is and as it was: a process leaving a container counts too.
        for table in (new.by_pid, old.by_pid):
            stat = table.get(pid)
            for _ in range(_MAX_DEPTH):
                if stat is None:
                    break
                if stat.pid in shims:
                    dirty.add(stat.pid)
                    break
                stat = table.get(stat.ppid)
    return frozenset(dirty)


# Deeper process trees than this below a shim are not met; the bound stops a loop in a table
# read across a pid's reuse.
_MAX_DEPTH = 256


# Seconds between full scans while the proc connector is followed (the processes collector's
# --collector.processes.resync-interval sets it).
DEFAULT_RESYNC_INTERVAL = 300.0


# Why a scan read every process (exporter.changes' reasons).
FullScanReason = Literal["start", "resync", "lost_events", "error"]


def _ignore(*_args: object) -> None:
    pass


def _pid(stat: ProcStat) -> int:
    return stat.pid


def _children_patched(
    last: ProcessScan, procs: Mapping[int, ProcStat], changed: set[int]
) -> tuple[dict[int, list[ProcStat]], set[tuple[int, int]]]:
    """Who is whose child after the `changed` pids: the lists of the parents a changed process
    left or joined made again (in pid order, as ProcfsReader._build makes them), the others the
    last scan's; and the (pid, start time) of the processes gone or replaced since."""
    old = last.by_pid
    joined: dict[int, list[ProcStat]] = {}
    parents: set[int] = set()
    dead: set[tuple[int, int]] = set()
    for pid in changed:
        was, now = old.get(pid), procs.get(pid)
        if was is not None:
            parents.add(was.ppid)
            if now is None or now.start_ticks != was.start_ticks:
                dead.add((pid, was.start_ticks))
        if now is not None:
            parents.add(now.ppid)
            joined.setdefault(now.ppid, []).append(now)
    children = dict(last.children)
    for ppid in parents:
        kids = [c for c in children.get(ppid, ()) if c.pid not in changed]
        kids += joined.get(ppid, ())
        if kids:
            kids.sort(key=_pid)
            children[ppid] = kids
        else:
            children.pop(ppid, None)
    return children, dead


class ProcfsReader:
    def __init__(
        self,
        procfs: str | Path = "/proc",
        follow_events: bool = True,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(procfs)
        # Collectors run in threads of their own: the caches are kept under this.
        self._lock = threading.Lock()
        # Plain string paths: pathlib's joins cost more than the reads in a full /proc scan.
        self._prefix = str(self.root).rstrip("/") + "/"
        self._ticks_per_second = os.sysconf("SC_CLK_TCK")
        self._boot_time: float | None = None  # btime as first read, see clock()
        self._boot_lock = threading.Lock()
        # What does not change for a process, keyed by its identity: its NSpid for (pid, start
        # time), and what its argv says it is (a daemon's name, a shim's command) for (pid, start
        # time, comm), since an exec between fork and our read changes argv and comm together
        # (an exec event drops it too). Pruned to the live processes when the table changes.
        self._commands: dict[tuple[int, int, str], tuple[str | None, ShimCommand | None]] = {}
        self._nspid: dict[tuple[int, int], tuple[int, ...]] = {}
        # A process's namespaces change only if it calls setns or unshare itself, and the tools
        # that do so (nsenter, unshare, runc's init) then exec another program, which changes
        # comm: cached by (pid, start time, comm) once read whole and verified.
        self._namespaces: dict[tuple[int, int, str], tuple[NamespaceLink, ...]] = {}
        # The table between scans, and what follows its changes.
        self.resync_interval = DEFAULT_RESYNC_INTERVAL
        self.on_reread: Callable[[FullScanReason], None] = _ignore
        self.on_lost: Callable[[], None] = _ignore
        self._follow = follow_events
        self._now = now
        self._events: ProcEvents | None = None
        self._procs: dict[int, ProcStat] = {}
        self._zombies: set[int] = set()
        self._last: ProcessScan | None = None
        self._last_full = 0.0
        # /proc/PID/stat reads by scans so far: what following the events saves, counted.
        self.stats_reads = 0

    # -- single-file reads; None means the process is gone ---------------------------------

    def _read_text(self, relative: str) -> str | None:
        try:
            fd = os.open(self._prefix + relative, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in _GONE:
                return None
            raise
        try:
            data = os.read(fd, _READ_SIZE)
            if len(data) == _READ_SIZE:  # a long cmdline or status: read on to the end
                chunks = [data]
                while chunk := os.read(fd, _READ_SIZE):
                    chunks.append(chunk)
                data = b"".join(chunks)
        except OSError as exc:  # ESRCH: the process exited between open and read
            if exc.errno in _GONE:
                return None
            raise
        finally:
            os.close(fd)
        return data.decode(errors="replace")

    def stat(self, pid: int) -> ProcStat | None:
        text = self._read_text(f"{pid}/stat")
        return parse_stat(text) if text else None

    def cmdline(self, pid: int) -> tuple[str, ...]:
        text = self._read_text(f"{pid}/cmdline")
        return tuple(text.rstrip("\0").split("\0")) if text else ()

    def nspid(self, pid: int) -> tuple[int, ...]:
        text = self._read_text(f"{pid}/status")
        return parse_nspid(text) if text else ()

    def namespaces(self, pid: int) -> tuple[tuple[NamespaceLink, ...], tuple[str, ...]] | None:
        """(readable links, kinds refused for lack of privilege); None if the process is gone."""
        links: list[NamespaceLink] = []
        refused: list[str] = []
        for kind in NAMESPACE_KINDS:
            try:
                links.append(parse_namespace_link(os.readlink(f"{self._prefix}{pid}/ns/{kind}")))
            except PermissionError:
                refused.append(kind)
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise
                if not Path(f"{self._prefix}{pid}").exists():
                    return None
                # The kernel lacks this namespace kind (cgroup before 4.6, ...): nothing to say.
        return tuple(links), tuple(refused)

    def namespaces_of(
        self, process: ProcStat
    ) -> tuple[tuple[NamespaceLink, ...], tuple[str, ...]] | None:
        """namespaces() of a process from the scan, verified to be that process still (None if
        it is gone or its pid was reused meanwhile)."""
        identity = (process.pid, process.start_ticks, process.comm)
        if (cached := self._namespaces.get(identity)) is not None:
            return cached, ()
        read = self.namespaces(process.pid)
        if read is None or not self.same_process(process):
            return None
        if not read[1]:
            with self._lock:
                self._namespaces[identity] = read[0]
        return read

    def clock(self) -> Clock:
        text = self._read_text("stat")
        if text is None:
            raise ProcfsError(f"{self.root}/stat is missing: is --path.procfs a procfs?")
        boot_time = parse_boot_time(text)
        with self._boot_lock:  # clock() is asked inside scans that hold self._lock
            # The kernel computes btime on each read (wall clock minus uptime): clock slewing
            # moves it by a second now and then, and every start time derived from it with it,
            # so a process would look restarted (client_golang#289). Kept until the clock is
            # stepped (a VM restored, a clock set), which moves it further.
            if self._boot_time is None or abs(boot_time - self._boot_time) > _BOOT_TIME_JITTER:
                self._boot_time = boot_time
            boot_time = self._boot_time
        return Clock(boot_time=boot_time, ticks_per_second=self._ticks_per_second)

    def pids(self) -> list[str]:
        """The process ids /proc lists now (a directory listing: no process file read)."""
        try:
            return [e.name for e in os.scandir(self.root) if e.name.isdigit()]
        except OSError as exc:
            raise ProcfsError(f"cannot list {self.root}: {exc.strerror}") from exc

    def process_table(self) -> list[ProcStat]:
        entries = self.pids()
        table = []
        for name in entries:
            text = self._read_text(name + "/stat")
            if text:
                table.append(parse_stat(text))
        return table

    def close(self) -> None:
        """The proc connector's socket is the only thing held between samples."""
        with self._lock:
            if self._events is not None:
                self._events.close()
                self._events = None

    # -- one sample -------------------------------------------------------------------------

    def scan(self, confirming: bool = False) -> ProcessScan:
        """The process table now: who is whose child, and the shims and daemons. Collectors of
        one tick share one (exporter.tick).

        confirming: a second look a moment after the tick's scan (collectors.confirm), which
        listed /proc: while the proc connector is followed, its events since then say what
        changed, and /proc is not listed again (the next tick's scan lists it)."""
        with self._lock:
            return self._scan(listing=not confirming)

    @property
    def follows_events(self) -> bool:
        return self._events is not None

    def _scan(self, listing: bool = True) -> ProcessScan:
        clock = self.clock()
        reason = self._full_scan_reason()
        changes: Changes | None = None
        if reason is None and self._events is not None:
            try:
                changes = self._events.drain()
            except OSError as exc:
                log.warning("proc connector failed, scanning /proc in full: %s", exc.strerror)
                self._events.close()
                self._events = None
                reason = "error"
            else:
                if changes.lost:
                    self.on_lost()
                    reason, changes = "lost_events", None
                elif listing:
                    # Processes can appear or vanish with no event of ours: /proc remounted
                    # without hidepid, a privilege gained or lost. The listing (~2 ms at 1,000
                    # processes) is the truth of which exist; events say which of them changed.
                    listed = {int(pid) for pid in self.pids()}
                    changes.touched |= listed ^ self._procs.keys()
        changed: set[int] | None = None  # the pids the events changed; None: a full scan
        if changes is None:  # a full scan: the first, the safety net, or no events to follow
            known = self._procs
            # A process read the same as before stays the same object (see ProcessScan.by_pid).
            procs = {}
            for stat in self.process_table():
                was = known.get(stat.pid)
                procs[stat.pid] = was if was is not None and was == stat else stat
            zombies = {pid for pid, stat in procs.items() if stat.state == "Z"}
            self.stats_reads += len(procs)
            if reason is not None:
                self.on_reread(reason)
            self._last_full = self._now()
        else:
            procs, zombies, changed = self._apply(changes)
        last = self._last
        if (
            last is not None
            and clock == last.clock
            and (procs is self._procs or (changes is None and procs == self._procs))
        ):
            return last  # the same object: every cache keyed on it holds
        self._procs, self._zombies = procs, zombies
        if last is not None and changed is not None and clock == last.clock:
            self._last = self._patch(last, procs, changed)
        else:
            self._last = self._build(clock, procs)
        return self._last

    def _full_scan_reason(self) -> FullScanReason | None:
        """Why this scan reads everything; None when it follows the events, or when there are
        none to follow (every scan is a full one then, as logged once: not counted)."""
        if self._last is None:
            if self._events is None:
                self._subscribe()
            return "start"
        if self._events is None:
            return None
        if self._now() - self._last_full >= self.resync_interval:
            return "resync"
        return None

    def _subscribe(self) -> None:
        if not self._follow:
            return
        # Events name pids as the initial PID namespace sees them: only of use when this procfs
        # shows the namespace the exporter lives in (the kernel checks the rest).
        try:
            own = os.readlink(self._prefix + "self") == str(os.getpid())
        except OSError:
            own = False
        if not own:
            log.debug("%s is not the exporter's own procfs: every scan reads it all", self.root)
            return
        try:
            self._events = ProcEvents.open()
        except ProcEventsUnavailable as exc:
            log.warning("every /proc scan reads every process: %s", exc)

    def follow(self, events: ProcEvents) -> None:
        """Follows this feed of process events from the next scan on (tests give one)."""
        with self._lock:
            self._events = events

    def _apply(self, changes: Changes) -> tuple[dict[int, ProcStat], set[int], set[int]]:
        """The table with the changed processes read again, its zombies, and the pids whose
        entry is new, gone or another object; the same dict (and no pids) when none changed."""
        dirty = changes.touched | changes.exited | self._zombies
        last = self._last
        if last is not None:
            for pid in changes.exited:  # its children are reparented when its last thread exits
                dirty.update(child.pid for child in last.children.get(pid, ()))
        read = {pid: self.stat(pid) for pid in dirty}
        self.stats_reads += len(dirty)
        # A new program: what its argv says and its namespaces are read again, and it is new
        # even under the same name. Otherwise only what reads differently is new: a zombie
        # still there, a thread's exit, leave the table the same object.
        for cache in (self._commands, self._namespaces):
            if stale := [key for key in cache if key[0] in changes.execed]:
                for key in stale:
                    del cache[key]
        new = {
            pid: stat
            for pid, stat in read.items()
            if pid in changes.execed or self._procs.get(pid) != stat
        }
        if not new:
            return self._procs, self._zombies, set()
        procs, zombies = dict(self._procs), set(self._zombies)
        for pid, stat in new.items():
            if stat is None:
                procs.pop(pid, None)
                zombies.discard(pid)
            else:
                procs[pid] = stat
                if stat.state == "Z":
                    zombies.add(pid)
                else:
                    zombies.discard(pid)
        return procs, zombies, set(new)

    def _build(self, clock: Clock, procs: dict[int, ProcStat]) -> ProcessScan:
        table = [procs[pid] for pid in sorted(procs)]
        children: dict[int, list[ProcStat]] = {}
        for stat in table:
            children.setdefault(stat.ppid, []).append(stat)
        live = {(stat.pid, stat.start_ticks) for stat in table}
        for gone in self._nspid.keys() - live:
            del self._nspid[gone]
        for key in [k for k in self._commands if k[:2] not in live]:
            del self._commands[key]
        for key in [k for k in self._namespaces if k[:2] not in live]:
            del self._namespaces[key]
        shims: list[tuple[ProcStat, ShimCommand]] = []
        daemons: list[DaemonProcess] = []
        for stat in table:
            if stat.comm.startswith(_SHIM_COMMS) or stat.comm in _DAEMON_NAMES:  # a few of 1,000
                self._classify(clock, procs, stat, shims, daemons)
        return ProcessScan(clock, table, children, shims, daemons, procs)

    def _patch(
        self, last: ProcessScan, procs: dict[int, ProcStat], changed: set[int]
    ) -> ProcessScan:
        """_build for a table that differs from the last scan's only in the `changed` pids
        (the events'): the last scan's children, shims and daemons kept but for those pids and
        their children (whose parent may have changed), so that a container started or removed
        costs a pass over its own processes, not over all 1,000 (three passes each)."""
        table = [procs[pid] for pid in sorted(procs)]
        children, dead = _children_patched(last, procs, changed)
        # Every process that left the table is a changed pid (its exit, or the listing). What a
        # collector cached from an older scan after its process had gone waits for the next
        # full scan's _build (resync_interval), which prunes to the live table.
        if dead:
            for gone in self._nspid.keys() & dead:
                del self._nspid[gone]
            for cache in (self._commands, self._namespaces):
                for key in [k for k in cache if k[:2] in dead]:
                    del cache[key]
        # A process is a shim or a daemon by its own stat and argv and by its parent's name:
        # looked at again for each changed one and each child of a changed one.
        again = set(changed)
        for pid in changed:
            again.update(c.pid for c in children.get(pid, ()))
        shims = [entry for entry in last.shims if entry[0].pid not in again]
        daemons = [d for d in last.daemons if d.pid not in again]
        for pid in sorted(again):
            if (stat := procs.get(pid)) is not None:
                self._classify(last.clock, procs, stat, shims, daemons)
        shims.sort(key=lambda entry: entry[0].pid)
        daemons.sort(key=lambda daemon: daemon.pid)
        return ProcessScan(last.clock, table, children, shims, daemons, procs)

    def _classify(
        self,
        clock: Clock,
        procs: Mapping[int, ProcStat],
        stat: ProcStat,
        shims: list[tuple[ProcStat, ShimCommand]],
        daemons: list[DaemonProcess],
    ) -> None:
        """Adds the process to `shims` or `daemons` if it is one (by its argv, read once)."""
        if stat.state == "Z":
            return  # exited, not yet reaped: no shim or daemon any more, whatever argv said
        if not (stat.comm.startswith(_SHIM_COMMS) or stat.comm in _DAEMON_NAMES):
            return
        identity = (stat.pid, stat.start_ticks, stat.comm)
        known = self._commands.get(identity)
        if known is None:
            argv = self.cmdline(stat.pid)
            name = daemon_name(argv)
            known = (name, None if name is not None else parse_shim_cmdline(argv))
            if argv:  # empty for a zombie, or a process gone mid-read
                self._commands[identity] = known
        name, command = known
        parent = procs.get(stat.ppid)
        if name is not None and parent is not None and parent.comm == stat.comm:
            # Forked by the daemon, not yet exec'd (dockerd runs iptables and docker-proxy,
            # containerd its shims): its argv is still the daemon's. Counted as a second
            # daemon it made "the only dockerd" ambiguous.
            return
        if name is not None:
            daemons.append(DaemonProcess(name, stat.pid, clock.to_unix(stat.start_ticks)))
        elif command is not None:
            shims.append((stat, command))

    def pid1(self, scan: ProcessScan, shim: ProcStat) -> ProcStat | None:
        direct = scan.children.get(shim.pid, [])
        nspids = {}
        for child in direct:
            identity = (child.pid, child.start_ticks)
            if (nspid := self._nspid.get(identity)) is None:
                nspid = self.nspid(child.pid)
                with self._lock:
                    self._nspid[identity] = nspid
            nspids[child.pid] = nspid
        chosen = choose_pid1(direct, nspids)
        return next((c for c in direct if c.pid == chosen), None)

    def same_process(self, before: ProcStat) -> bool:
        """Still the process we listed: neither gone nor its pid reused since."""
        after = self.stat(before.pid)
        return after is not None and after.start_ticks == before.start_ticks

    def host_namespaces(self) -> tuple[NamespaceLink, ...]:
        """The host's namespaces: PID 1's, else kthreadd's for what PID 1 refuses.

        Some inits are not dumpable (a microVM's init, a hardened systemd), so even root gets
        EACCES on /proc/1/ns/*. kthreadd (PID 2) always lives in the initial namespaces.
        """
        pid1 = self.namespaces(1)
        if pid1 is None:
            if hidepid := hidepid_option(self.root):
                raise ProcfsError(
                    f"{self.root} is mounted with {hidepid}: other users' processes are hidden "
                    "(needs root, or the group given by gid=)"
                )
            raise ProcfsError(f"{self.root}/1 is missing: is --path.procfs the host's procfs?")
        links, refused = pid1
        kthreadd = self.stat(2)
        if refused and kthreadd is not None and kthreadd.comm == "kthreadd":
            fallback = self.namespaces(2)
            if fallback is not None:
                links += tuple(link for link in fallback[0] if link.kind in refused)
        return tuple(sorted(links, key=lambda link: link.kind))
