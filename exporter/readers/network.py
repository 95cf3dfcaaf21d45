"""Network reader: the host's links from one netlink dump, each running container's network
namespace from /proc, the far end of every veth, and who holds the namespaces no container
explains, all read without entering any namespace."""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass

from exporter.logonce import ChangeLog
from exporter.readers.netlink import Link, NetlinkError, RtnlSocket
from exporter.readers.netns import OWNER_UNKNOWN, NamespaceOwner, OwnerReader
from exporter.readers.procfs import (
    DOCKER_RUNTIME_NAMESPACE,
    ProcessScan,
    ProcfsReader,
    ProcStat,
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


log = logging.getLogger(__name__)

_REFUSED = (errno.EPERM, errno.EACCES)


class NetworkReader:
    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._socket: RtnlSocket | None = None
        self._log = ChangeLog(log)
        # (pid, start time, comm) -> (netns inode, nsid), for the processes seen last read.
        self._netns: dict[tuple[int, int, str], tuple[int, int]] = {}
        self._owners: OwnerReader | None = None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def read(self, procfs: ProcfsReader, scan: ProcessScan) -> NetworkReading:
        """The links as they are now, then the containers in `scan` (taken after the dump: a
        veth seen in the dump belongs to a container whose processes exist by then)."""
        if self._socket is None:
            self._socket = RtnlSocket(self.timeout)
        try:
            return self._read(self._socket, procfs, scan)
        except (OSError, NetlinkError):
            # A socket left mid-answer by an error is not reused.
            self.close()
            raise

    def _read(self, sock: RtnlSocket, procfs: ProcfsReader, scan: ProcessScan) -> NetworkReading:
        links = sock.dump_links()
        host_net = {n.kind: n.inode for n in procfs.host_namespaces()}.get("net")
        netns, unreadable = self._container_netns(sock, procfs, scan, host_net)
        peers = self._peers(
            sock,
            [
                (link.peer_index, link.peer_nsid)
                for link in links
                if link.kind == "veth" and link.peer_nsid is not None and link.peer_index
            ],
        )
        self._warn_on_refusals(unreadable > 0, any(p.refused for p in peers))
        # Namespaces behind veths that no container's process is in: Docker's sandboxes,
        # other runtimes' pods, leftovers. Asked only when there are any.
        wanted = {
            link.peer_nsid for link in links if link.kind == "veth" and link.peer_nsid is not None
        } - {n.nsid for n in netns}
        owners: tuple[NamespaceOwner, ...] = ()
        if wanted:
            known = {n.inode for n in netns} | ({host_net} if host_net is not None else set())
            if self._owners is None or self._owners.procfs is not procfs:
                self._owners = OwnerReader(procfs)
            owners = self._owners.resolve(sock, wanted, scan, known)
        self._warn_on_unknown_owners(owners)
        return NetworkReading(
            links=tuple(links),
            container_netns=tuple(netns),
            peers=tuple(peers),
            unreadable_netns=unreadable,
            namespace_owners=owners,
        )

    def _container_netns(
        self, sock: RtnlSocket, procfs: ProcfsReader, scan: ProcessScan, host_net: int | None
    ) -> tuple[list[ContainerNetns], int]:
        """Open each container's /proc/PID/ns/net, then ask the ids of all in one batch.

        A process's network namespace, and the id the host gives it, stay as they are while it
        lives (short of it calling setns itself, and then exec: see ProcfsReader.namespaces_of),
        so both are kept by (pid, start time, comm) once known.
        """
        opened: list[tuple[str, ProcStat, int]] = []
        found: dict[tuple[str, int], ContainerNetns] = {}
        known: dict[tuple[int, int, str], tuple[int, int]] = {}
        unreadable = 0
        try:
            for shim, command in scan.shims:
                if command.runtime_namespace not in ("", DOCKER_RUNTIME_NAMESPACE):
                    continue
                # PID 1, and while a container starts, runc's init: libnetwork moves the veth
                # into the namespace before runc hands over to the container's own PID 1.
                candidates = [
                    p for p in descendants(shim.pid, scan.children) if p.comm.startswith("runc:")
                ]
                pid1 = procfs.pid1(scan, shim)
                if pid1 is not None:
                    candidates.insert(0, pid1)
                for process in candidates:
                    identity = (process.pid, process.start_ticks, process.comm)
                    if (cached := self._netns.get(identity)) is not None:
                        known[identity] = cached
                        self._found(found, command.container_id, process.pid, *cached)
                        continue
                    try:
                        fd = os.open(
                            f"{procfs.root}/{process.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC
                        )
                    except (FileNotFoundError, ProcessLookupError):
                        continue  # gone since the scan
                    except PermissionError:
                        unreadable += 1
                        break
                    opened.append((command.container_id, process, fd))
            nsids = sock.nsids_of([fd for _, _, fd in opened])
            inodes = [os.fstat(fd).st_ino for _, _, fd in opened]
        finally:
            for _, _, fd in opened:
                os.close(fd)
        for (container_id, process, _), nsid, inode in zip(opened, nsids, inodes, strict=True):
            # A pid reused between the scan and the open would name another namespace.
            if inode != host_net and procfs.same_process(process):
                self._found(found, container_id, process.pid, inode, nsid)
                if nsid is not None:  # an id not given yet may be given later
                    known[(process.pid, process.start_ticks, process.comm)] = (inode, nsid)
        self._netns = known  # only the processes seen now
        return sorted(found.values(), key=lambda n: (n.container_id, n.inode)), unreadable

    @staticmethod
    def _found(
        found: dict[tuple[str, int], ContainerNetns],
        container_id: str,
        pid: int,
        inode: int,
        nsid: int | None,
    ) -> None:
        found.setdefault(
            (container_id, inode),
            ContainerNetns(container_id=container_id, pid=pid, inode=inode, nsid=nsid),
        )

    @staticmethod
    def _peers(sock: RtnlSocket, wanted: list[tuple[int, int]]) -> list[PeerLink]:
        try:
            names = sock.link_names(wanted)
        except NetlinkError as exc:
            if exc.errno not in _REFUSED:
                raise
            return [
                PeerLink(nsid=nsid, index=index, name=None, refused=True) for index, nsid in wanted
            ]
        return [
            PeerLink(nsid=nsid, index=index, name=name)
            for (index, nsid), name in zip(wanted, names, strict=True)
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
