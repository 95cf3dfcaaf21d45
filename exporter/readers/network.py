"""Network reader: the host's links from one netlink dump, each running container's network
namespace from /proc, the far end of every veth, and who holds the namespaces no container
explains, all read without entering any namespace.

Change-driven: rtnetlink notifies every change of a host link and every namespace id given or
released (netlink.LinkEvents), so the links are dumped once and then kept: each link a
notification names is asked again by its ifindex (gone: dropped), and with it every veth whose
far end may have moved without a word about the near one. Moving a veth's peer out of the host
notifies the moved end (RTM_DELLINK) and the id (RTM_NEWNSID), never the end left on the host:
that end is asked again because its peer's ifindex was named; a far end moved between two
containers' namespaces notifies only those (heard too, netlink.LinkEvents): the veths leading
there are asked again. Notifications are not parsed as links: a bridge's (AF_BRIDGE) describe
a port, not the link, and a link is read after the drain, as it is now. Veth peers are looked
up only for veths that are new or whose peer changed, and namespace owners only when the set of
namespaces no container explains changed. What no notification tells (a process joining a
namespace no container explains) waits for the periodic full dump (resync_interval), as does
everything after lost notifications.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from exporter.logonce import ChangeLog
from exporter.readers.netlink import (
    Link,
    LinkChanges,
    LinkCounters,
    LinkEvents,
    NetlinkError,
    RtnlSocket,
)
from exporter.readers.netns import OWNER_UNKNOWN, NamespaceOwner, OwnerReader
from exporter.readers.procfs import (
    DOCKER_RUNTIME_NAMESPACE,
    ProcessScan,
    ProcfsReader,
    ProcStat,
    changed_shims,
    descendants,
)


@dataclass(frozen=True)
class ContainerNetns:
    """A running container's network namespace, and the id the host's namespace gives it."""

    container_id: str
    pid: int
    inode: int
    nsid: int | None  # None while the host has assigned it no id


@dataclass(frozen=True)
class PeerLink:
    """The far end of a host veth, looked up in the peer's namespace.

    name is None when the link is absent there, or when the lookup was refused (refused=True:
    it needs CAP_NET_ADMIN), which proves nothing about the peer.
    """

    nsid: int
    index: int
    name: str | None
    refused: bool = False


@dataclass(frozen=True)
class NetworkReading:
    """One reading of the host's links and the namespaces behind its veths."""

    links: tuple[Link, ...]
    container_netns: tuple[ContainerNetns, ...]
    peers: tuple[PeerLink, ...]
    unreadable_netns: int  # containers whose /proc/PID/ns/net could not be opened
    # The owners of the namespaces veths lead into that no container's process is in.
    namespace_owners: tuple[NamespaceOwner, ...] = ()


@dataclass(frozen=True)
class NetworkCounters:
    """The host veths' counters, read every run: traffic moves them, so they are kept apart from
    the reading verdicts are judged on."""

    links: tuple[tuple[int, LinkCounters], ...]  # (ifindex, counters) of each host veth

    def by_index(self) -> dict[int, LinkCounters]:
        return dict(self.links)


class _ShimNetns:
    """What one shim's processes were found in, as ContainerNetns (the same objects while kept,
    so that readings compare by identity), and their (pid, start time, comm) -> (inode, nsid)."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.found: list[ContainerNetns] = []
        self.known: dict[tuple[int, int, str], tuple[int, int | None]] = {}
        self.complete = True  # every process was read (none gone, none refused)

    def add(self, identity: tuple[int, int, str], pid: int, inode: int, nsid: int | None) -> None:
        self.known[identity] = (inode, nsid)
        if all(n.inode != inode for n in self.found):
            self.found.append(ContainerNetns(self.container_id, pid, inode, nsid))

    def all_have_ids(self) -> bool:
        return all(nsid is not None for _, nsid in self.known.values())


def _found_peer(key: tuple[int, int, int], name: str | None) -> PeerLink | None:
    """The peer a lookup named, for (veth ifindex, peer ifindex, peer nsid); None if unnamed."""
    return None if name is None else PeerLink(nsid=key[2], index=key[1], name=name)


# Why a reading read everything again (exporter.changes reasons), None when it followed changes.
REREAD_START = "start"
REREAD_RESYNC = "resync"
REREAD_LOST = "lost_events"
REREAD_ERROR = "error"

log = logging.getLogger(__name__)

_REFUSED = (errno.EPERM, errno.EACCES)


class NetworkReader:
    """Readings that follow the host's link changes (see the module's docstring).

    resync_interval: seconds between full re-reads whatever the notifications said (None:
    never). Each full re-read leaves its reason in `reread` (REREAD_*), and the loss of
    notifications that caused one in `lost`, for the caller to count; `dumps`, `updates` (the
    readings that applied notifications to the kept links instead), `links_asked` (links asked
    again by ifindex) and `peer_lookups` count the work done, for tests and benchmarks.
    """

    def __init__(
        self,
        timeout: float = 5.0,
        resync_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        events_rcvbuf: int = 1 << 20,
    ) -> None:
        self.timeout = timeout
        self.resync_interval = resync_interval
        self._clock = clock
        self._events_rcvbuf = events_rcvbuf
        self._socket: RtnlSocket | None = None
        self._events: LinkEvents | None = None
        self._log = ChangeLog(log)
        # (pid, start time, comm) -> (netns inode, nsid), for the processes seen last read.
        # An id not given yet is kept too: the host gives ids with a notification (RTM_NEWNSID),
        # after which those are asked again.
        self._netns: dict[tuple[int, int, str], tuple[int, int | None]] = {}
        self._owners: OwnerReader | None = None
        self._links: tuple[Link, ...] | None = None  # the last dump, while no event says more
        self._full_at = 0.0  # when the last full re-read began
        self._failed = False  # the last reading raised: the next one reads everything
        # (veth ifindex, peer ifindex, peer nsid) -> its peer, as found (named).
        self._peer_names: dict[tuple[int, int, int], PeerLink] = {}
        # (unexplained nsids, container namespaces' inodes) -> their owners, as found.
        self._owners_of: tuple[frozenset[int], frozenset[int], tuple[NamespaceOwner, ...]] | None
        self._owners_of = None
        # The scan the containers' namespaces were last found in, and what was found: a scan
        # that found nothing changed is the very same object (ProcfsReader follows process
        # events), and then so are the namespaces, until an id is given.
        self._netns_of: tuple[ProcessScan, list[ContainerNetns], int] | None = None
        # What each shim's processes were found in, by (shim pid, start time), as of the scan
        # _shims_scan (see _container_netns).
        self._by_shim: dict[tuple[int, int], _ShimNetns] = {}
        self._shims_scan: ProcessScan | None = None
        self._last: NetworkReading | None = None
        self.reread: str | None = None
        self.lost = False
        self.dumps = 0
        self.updates = 0
        self.links_asked = 0
        self.peer_lookups = 0

    def close(self) -> None:
        for each in (self._socket, self._events):
            if each is not None:
                each.close()
        self._socket = self._events = None

    def read(self, procfs: ProcfsReader, scan: ProcessScan, fresh: bool = False) -> NetworkReading:
        """The links as they are now, then the containers in `scan` (taken after the dump: a
        veth seen in the dump belongs to a container whose processes exist by then). The very
        same reading as last time when nothing changed. fresh: dump the links and ask the
        namespaces' owners again whatever the notifications said (a confirming reading), not
        counted as a full re-read."""
        try:
            reading = self._read(procfs, scan, fresh)
        except (OSError, NetlinkError):
            # A socket left mid-answer by an error is not reused; the next reading starts over.
            self.close()
            self._failed = True
            raise
        self._failed = False
        if reading == self._last:
            return self._last
        self._last = reading
        return reading

    def counters(self) -> NetworkCounters:
        """The counters of the host veths of the last reading, as they are now."""
        if self._socket is None or self._links is None:
            raise RuntimeError("NetworkReader.counters() before a reading")
        try:
            stats = self._socket.link_stats()
        except (OSError, NetlinkError):
            self.close()
            self._failed = True
            raise
        return NetworkCounters(
            tuple(
                (link.index, stats[link.index])
                for link in self._links
                if link.kind == "veth" and link.index in stats
            )
        )

    def _changed(self, fresh: bool) -> LinkChanges | None:
        """What the notifications said since the last reading (None: the links must be dumped
        again); sets `reread` and `lost`."""
        self.reread, self.lost = None, False
        changes: LinkChanges | None = None
        if self._events is None or self._links is None:
            # Subscribed before the dump, so that nothing made between the two is missed.
            self.close()
            self._events = LinkEvents(self._events_rcvbuf)
            self.reread = REREAD_ERROR if self._failed else REREAD_START
        else:
            changes = self._events.drain()
            if changes.lost:
                self.reread, self.lost = REREAD_LOST, True
            elif (
                self.resync_interval is not None
                and self._clock() - self._full_at >= self.resync_interval
            ):
                self.reread = REREAD_RESYNC
            if changes.peer_nsids:
                # A link changed where veths lead (one renamed, moved in or out): their far
                # ends there are looked up again.
                self._peer_names = {
                    key: name
                    for key, name in self._peer_names.items()
                    if key[2] not in changes.peer_nsids
                }
            if changes.nsids:
                # An id given may be one a namespace kept without an id was waiting for.
                self._netns = {k: v for k, v in self._netns.items() if v[1] is not None}
                self._netns_of = None
                # An id released may go to another namespace: nothing found under it holds.
                self._peer_names = {
                    key: name
                    for key, name in self._peer_names.items()
                    if key[2] not in changes.nsids
                }
                self._owners_of = None
        if self.reread is not None:
            self._peer_names.clear()
            self._netns_of = None
            self._by_shim = {}
            self._full_at = self._clock()
        if self.reread is not None or fresh:
            # A confirming reading asks the owners again (the links are as current as the
            # notifications make them); a peer's name found under the same (veth, peer ifindex,
            # peer nsid) stands: a peer deleted takes its veth with it, one moved changes the
            # nsid, and a gone one is never kept.
            self._owners_of = None
        return None if self.reread is not None else changes

    def _read(self, procfs: ProcfsReader, scan: ProcessScan, fresh: bool) -> NetworkReading:
        changes = self._changed(fresh)
        if self._socket is None:
            self._socket = RtnlSocket(self.timeout)
        if changes is None or self._links is None:
            # Without counters: they come apart, from counters(), every run. In ifindex order,
            # as the notifications' updates keep them.
            dumped = self._socket.dump_links(stats=False)
            self._links = tuple(sorted(dumped, key=lambda link: link.index))
            self.dumps += 1
        elif changes.messages:
            self._links = self._update(self._socket, self._links, changes)
        sock, links = self._socket, self._links
        host_net = {n.kind: n.inode for n in procfs.host_namespaces()}.get("net")
        if self._netns_of is not None and self._netns_of[0] is scan:
            netns, unreadable = self._netns_of[1:]
        else:
            netns, unreadable = self._container_netns(sock, procfs, scan, host_net)
            self._netns_of = (scan, netns, unreadable)
        peers = self._peers(
            sock,
            [
                (link.index, link.peer_index, link.peer_nsid)
                for link in links
                if link.kind == "veth" and link.peer_nsid is not None and link.peer_index
            ],
        )
        self._warn_on_refusals(unreadable > 0, any(p.refused for p in peers))
        # Namespaces behind veths that no container's process is in: Docker's sandboxes,
        # other runtimes' pods, leftovers. Asked only when there are any, and again only when
        # they, or the containers' namespaces, changed.
        wanted = frozenset(
            link.peer_nsid for link in links if link.kind == "veth" and link.peer_nsid is not None
        ) - {n.nsid for n in netns}
        owners: tuple[NamespaceOwner, ...] = ()
        if wanted:
            known = frozenset(
                {n.inode for n in netns} | ({host_net} if host_net is not None else set())
            )
            if self._owners_of is not None and self._owners_of[:2] == (wanted, known):
                owners = self._owners_of[2]
            else:
                if self._owners is None or self._owners.procfs is not procfs:
                    self._owners = OwnerReader(procfs)
                owners = self._owners.resolve(sock, set(wanted), scan, set(known))
                self._owners_of = (wanted, known, owners)
        self._warn_on_unknown_owners(owners)
        return NetworkReading(
            links=links,
            container_netns=tuple(netns),
            peers=tuple(peers),
            unreadable_netns=unreadable,
            namespace_owners=owners,
        )

    def _update(
        self, sock: RtnlSocket, links: tuple[Link, ...], changes: LinkChanges
    ) -> tuple[Link, ...]:
        """The kept links with those the notifications concern asked again: each one named,
        and each veth whose far end was named here (moved out of this namespace: only that end
        is notified) or is in a namespace where a link changed or whose id came or went."""
        there = changes.peer_nsids | changes.nsids
        wanted = set(changes.indexes)
        for link in links:
            if link.kind != "veth" or link.peer_index is None:
                continue
            if (link.peer_nsid is None and link.peer_index in changes.indexes) or (
                link.peer_nsid in there
            ):
                wanted.add(link.index)
        if not wanted:
            return links
        asked = sorted(wanted)
        self.updates += 1
        self.links_asked += len(asked)
        kept = {link.index: link for link in links}
        for index, now in zip(asked, sock.links(asked), strict=True):
            if now is None:
                kept.pop(index, None)
            else:
                kept[index] = now
        return tuple(kept[index] for index in sorted(kept))

    def _container_netns(
        self, sock: RtnlSocket, procfs: ProcfsReader, scan: ProcessScan, host_net: int | None
    ) -> tuple[list[ContainerNetns], int]:
        """Open each container's /proc/PID/ns/net, then ask the ids of all in one batch.

        A process's network namespace, and the id the host gives it, stay as they are while it
        lives (short of it calling setns itself, and then exec: see ProcfsReader.namespaces_of),
        so both are kept by (pid, start time, comm) once known; the lack of an id only until
        the host notifies an id given (LinkEvents). What a shim's processes were found in is
        kept while none of them changed (procfs.changed_shims) and each has its id: a container
        started or removed looks at its own shim, not at all 250.
        """
        kept_before = self._by_shim
        dirty = changed_shims(self._shims_scan, scan) if kept_before else None
        opened: list[tuple[tuple[int, int], ProcStat, int]] = []
        by_shim: dict[tuple[int, int], _ShimNetns] = {}
        known: dict[tuple[int, int, str], tuple[int, int | None]] = {}
        unreadable = 0
        try:
            for shim, command in scan.shims:
                if command.runtime_namespace not in ("", DOCKER_RUNTIME_NAMESPACE):
                    continue
                key = (shim.pid, shim.start_ticks)
                kept = kept_before.get(key)
                if kept is not None and dirty is not None and shim.pid not in dirty:
                    by_shim[key] = kept
                    known.update(kept.known)
                    continue
                here = by_shim[key] = _ShimNetns(command.container_id)
                for pending in self._open_pending(procfs, scan, shim, here):
                    if pending is None:
                        unreadable += 1
                        break
                    opened.append((key, *pending))
                known.update(here.known)
            nsids = sock.nsids_of([fd for *_, fd in opened])
            inodes = [os.fstat(fd).st_ino for *_, fd in opened]
        finally:
            for *_, fd in opened:
                os.close(fd)
        for (key, process, _), nsid, inode in zip(opened, nsids, inodes, strict=True):
            # A pid reused between the scan and the open would name another namespace.
            if inode != host_net and procfs.same_process(process):
                identity = (process.pid, process.start_ticks, process.comm)
                by_shim[key].add(identity, process.pid, inode, nsid)
                known[identity] = (inode, nsid)
            else:
                by_shim[key].complete = False
        self._netns = known  # only the processes seen now
        # Kept for the next reading: the shims whose every process was read and has its id
        # (those kept from before were so already).
        self._by_shim = {
            key: each
            for key, each in by_shim.items()
            if each is kept_before.get(key) or (each.complete and each.all_have_ids())
        }
        self._shims_scan = scan
        found: dict[tuple[str, int], ContainerNetns] = {}
        for shim_netns in by_shim.values():
            for netns in shim_netns.found:
                found.setdefault((netns.container_id, netns.inode), netns)
        return sorted(found.values(), key=lambda n: (n.container_id, n.inode)), unreadable

    def _open_pending(
        self, procfs: ProcfsReader, scan: ProcessScan, shim: ProcStat, here: _ShimNetns
    ) -> Iterator[tuple[ProcStat, int] | None]:
        """A shim's processes: each already known added to `here`, each other one yielded with
        its /proc/PID/ns/net opened (the caller closes it); None when opening one was refused."""
        # PID 1, and while a container starts, runc's init: libnetwork moves the veth into the
        # namespace before runc hands over to the container's own PID 1.
        candidates = [p for p in descendants(shim.pid, scan.children) if p.comm.startswith("runc:")]
        pid1 = procfs.pid1(scan, shim)
        if pid1 is not None:
            candidates.insert(0, pid1)
        for process in candidates:
            identity = (process.pid, process.start_ticks, process.comm)
            if (cached := self._netns.get(identity)) is not None:
                here.add(identity, process.pid, *cached)
                continue
            try:
                fd = os.open(f"{procfs.root}/{process.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, ProcessLookupError):
                here.complete = False  # gone since the scan: not kept as found
                continue
            except PermissionError:
                here.complete = False
                yield None
                return
            yield process, fd

    def _peers(self, sock: RtnlSocket, veths: list[tuple[int, int, int]]) -> list[PeerLink]:
        """The far end of each (veth ifindex, peer ifindex, peer nsid): looked up in its
        namespace only when not found before under the same three numbers (a peer gone, or a
        refused lookup, is asked again)."""
        wanted = [key for key in veths if key not in self._peer_names]
        found: dict[tuple[int, int, int], str | None] = {}
        refused = False
        if wanted:
            self.peer_lookups += len(wanted)
            try:
                names = sock.link_names([(index, nsid) for _, index, nsid in wanted])
            except NetlinkError as exc:
                if exc.errno not in _REFUSED:
                    raise
                refused = True
            else:
                found = dict(zip(wanted, names, strict=True))
        if refused:
            return [PeerLink(nsid, index, None, refused=True) for _, index, nsid in veths]
        # Only the veths there are now: a gone one's numbers are forgotten. A peer found before
        # is the same object, so that readings compare by identity.
        kept = self._peer_names
        self._peer_names = {
            key: peer
            for key in veths
            if (peer := kept.get(key) or _found_peer(key, found.get(key))) is not None
        }
        return [
            self._peer_names.get(key) or PeerLink(nsid=key[2], index=key[1], name=None)
            for key in veths
        ]

    def _warn_on_unknown_owners(self, owners: tuple[NamespaceOwner, ...]) -> None:
        """Namespaces whose holder could not be read: their veths are never judged."""
        self._log.update(
            "owners",
            next((o.name for o in owners if o.kind == OWNER_UNKNOWN), None),
            "cannot tell who holds some network namespaces behind host veths; those veths are "
            "not judged",
            "every network namespace behind a host veth has a known holder again",
        )

    def _warn_on_refusals(self, netns_refused: bool, peers_refused: bool) -> None:
        self._log.update(
            "netns",
            "needs CAP_SYS_PTRACE" if netns_refused else None,
            "cannot open containers' /proc/PID/ns/net: veths cannot be paired or judged",
            "containers' network namespaces are readable again",
        )
        self._log.update(
            "peers",
            "needs CAP_NET_ADMIN" if peers_refused else None,
            "cannot look up veth peers in containers' namespaces: container interface names "
            "are unknown",
            "veth peers can be looked up again",
        )
