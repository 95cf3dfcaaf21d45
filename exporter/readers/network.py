"""Network reader: the host's links from one netlink dump, each running container's network
namespace from /proc, and the far end of every veth, read without entering any namespace."""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from exporter.facts import (
    DOCKER_RUNTIME_NAMESPACE,
    OWNER_UNKNOWN,
    ContainerNetns,
    EngineFacts,
    NamespaceOwner,
    NetworkFacts,
    PeerLink,
)
from exporter.plumbing import orphan_suspects
from exporter.readers.netlink import NetlinkError, RtnlSocket
from exporter.readers.netns import OwnerReader
from exporter.readers.procfs import (
    ProcessScan,
    ProcStat,
    descendants,
    shared_reader,
)

log = logging.getLogger(__name__)

_REFUSED = (errno.EPERM, errno.EACCES)


class NetworkReader:
    def __init__(
        self,
        procfs: str | Path = "/proc",
        timeout: float = 5.0,
        confirm_after: float = 1.0,
        engine: Callable[[], EngineFacts | None] = lambda: None,
    ) -> None:
        self.procfs = shared_reader(str(procfs))
        # The Engine API's last answer, if any, without a call: which bridges and networks are
        # Docker's, to decide what to look at twice. The verdicts use a fresh one.
        self.engine = engine
        self.timeout = timeout
        # Long enough for libnetwork to finish building or tearing down a pair, short enough
        # to leave most of the run's timeout.
        self.confirm_after = min(confirm_after, timeout / 4)
        self._socket: RtnlSocket | None = None
        self._refused_before: tuple[bool, bool] = (False, False)
        self._unknown_before: str | None = None
        # (pid, start time, comm) -> (netns inode, nsid), for the processes seen last read.
        self._netns: dict[tuple[int, int, str], tuple[int, int]] = {}
        self._owners = OwnerReader(self.procfs)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def read(self) -> NetworkFacts:
        if self._socket is None:
            self._socket = RtnlSocket(self.timeout)
        try:
            # The processes collector's scan of this moment will do: a veth whose container is
            # not in it yet is looked at again below, with a scan of its own.
            first = self._read(self._socket, share_scan=True)
            suspects = orphan_suspects(first, self.engine())
            if not suspects:
                return first
            # Look again before calling anything orphaned: a pair being built or torn down
            # looks orphaned for a few milliseconds.
            time.sleep(self.confirm_after)
            return replace(self._read(self._socket), earlier_suspects=suspects)
        except (OSError, NetlinkError):
            # A socket left mid-answer by an error is not reused.
            self.close()
            raise

    def _read(self, sock: RtnlSocket, share_scan: bool = False) -> NetworkFacts:
        # Links first, then processes: a veth seen in the dump belongs to a container whose
        # processes exist by the time /proc is read, so a starting container is not an orphan.
        links = sock.dump_links()
        scan = self.procfs.scan(shared_with="network" if share_scan else None)
        host_net = {n.kind: n.inode for n in self.procfs.host_namespaces()}.get("net")
        netns, unreadable = self._container_netns(sock, scan, host_net)
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
            owners = self._owners.resolve(sock, wanted, scan, known)
        self._warn_on_unknown_owners(owners)
        return NetworkFacts(
            links=tuple(links),
            container_netns=tuple(netns),
            peers=tuple(peers),
            unreadable_netns=unreadable,
            namespace_owners=owners,
        )

    def _container_netns(
        self, sock: RtnlSocket, scan: ProcessScan, host_net: int | None
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
                pid1 = self.procfs.pid1(scan, shim)
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
                            f"{self.procfs.root}/{process.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC
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
            if inode != host_net and self.procfs.same_process(process):
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
        """Once per change: namespaces whose holder could not be read are never judged."""
        reason = next((o.name for o in owners if o.kind == OWNER_UNKNOWN), None)
        if reason is not None and self._unknown_before is None:
            log.warning(
                "cannot tell who holds some network namespaces behind host veths; those veths "
                "are not judged",
                extra={"reason": reason},
            )
        elif reason is None and self._unknown_before is not None:
            log.info("every network namespace behind a host veth has a known holder again")
        self._unknown_before = reason

    def _warn_on_refusals(self, netns_refused: bool, peers_refused: bool) -> None:
        before = self._refused_before
        if netns_refused and not before[0]:
            log.warning(
                "cannot open containers' /proc/PID/ns/net: needs CAP_SYS_PTRACE; "
                "veths cannot be paired or judged"
            )
        if peers_refused and not before[1]:
            log.warning(
                "cannot look up veth peers in containers' namespaces: needs "
                "CAP_NET_ADMIN; container interface names are unknown"
            )
        if before != (False, False) and not (netns_refused or peers_refused):
            log.info("network namespaces are readable again")
        self._refused_before = (netns_refused, peers_refused)
