"""Who holds a network namespace that no Docker container's process is in.

A namespace lives while a process is in it or a file is bind-mounted on it. Docker bind-mounts
the namespaces it keeps without a container (swarm's ingress_sbox, overlay lb_* and 1-*
sandboxes) under its exec-root's netns/ directory; `ip netns`, CNI plugins and Podman's
netavark mount theirs under /run/netns (rootless Podman under /run/user/UID/netns). So the
owner of a namespace shows in the mount tables of the host (PID 1) and of dockerd, as nsfs
mounts whose root is `net:[inode]`, and failing that in the processes that are in it. Nothing
here goes by interface or bridge names.

Only the ids the host's veths carry are resolved, and each from the cheapest source first:
mount points seen before are opened again (their nsid asked in one batch) before any mount
table is read, and a process's namespace is kept by (pid, start time, comm) once read.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from exporter.readers.netlink import RtnlSocket
from exporter.readers.procfs import (
    ProcessScan,
    ProcfsReader,
    namespace_inode,
    parse_mountinfo,
)

# Who holds a network namespace a host veth leads into (NamespaceOwner.kind):
OWNER_CONTAINER = "container"  # a Docker container's processes (a ContainerNetns)
OWNER_DOCKER_SANDBOX = "docker_sandbox"  # dockerd's bind mount under <exec-root>/netns/
OWNER_FOREIGN = "foreign"  # another bind mount (ip netns, CNI, Podman) or a process not Docker's
OWNER_UNKNOWN = "unknown"  # could not be read: a refused mountinfo or /proc/PID/ns/net
OWNER_NONE = "none"  # nothing this reader can see holds it
OWNER_HOST = "host"  # both ends of the veth are in the host's namespace


@dataclass(frozen=True)
class NamespaceOwner:
    """A network namespace behind a host veth that no Docker container's process is in.

    kind: docker_sandbox (name: the file under dockerd's netns directory, such as
    ingress_sbox or lb_<network id>), foreign (name: the bind mount's path, or the holding
    process's comm) or unknown (name: why).
    """

    nsid: int
    inode: int | None
    kind: str
    name: str


_GONE = (errno.ENOENT, errno.ESRCH)
DEFAULT_EXEC_ROOT = "/var/run/docker"


@dataclass(frozen=True)
class NsfsMount:
    """A network namespace bind-mounted on a file, as one mount table lists it."""

    mount_point: str
    inode: int


@dataclass(frozen=True)
class _Candidate:
    """Where a namespace can be opened from, and whose it is if it is one we look for."""

    path: str  # under the procfs root: /proc/PID/root/<mount point> or /proc/PID/ns/net
    inode: int  # the namespace it named when listed
    kind: str
    name: str


def parse_nsfs_mounts(mountinfo: str) -> list[NsfsMount]:
    """The network namespaces mounted on files, from a /proc/PID/mountinfo: nsfs mounts whose
    root is the namespace, `net:[4026532XXX]`."""
    return [
        NsfsMount(mount.mount_point, inode)
        for mount in parse_mountinfo(mountinfo)
        if mount.fstype == "nsfs" and (inode := namespace_inode(mount.root, "net")) is not None
    ]


def exec_root(argv: Iterable[str]) -> str:
    """dockerd's --exec-root, where it keeps the namespaces it bind-mounts (under netns/)."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg.startswith("--exec-root="):
            return arg.split("=", 1)[1] or DEFAULT_EXEC_ROOT
        if arg == "--exec-root" and i + 1 < len(args):
            return args[i + 1]
    return DEFAULT_EXEC_ROOT


def _canonical(path: str) -> str:
    """/var/run is a link to /run on every current distribution; mount tables show /run."""
    path = "/" + path.strip("/")
    return path[4:] if path.startswith("/var/run/") or path == "/var/run" else path


def classify_mount(mount_point: str, docker_netns_dirs: Iterable[str]) -> tuple[str, str]:
    """(kind, name) of a namespace mounted at mount_point: Docker's when it is directly under
    one of dockerd's netns directories (named by the file), foreign otherwise (by its path)."""
    point = _canonical(mount_point)
    for directory in docker_netns_dirs:
        parent, _, name = point.rpartition("/")
        if parent == _canonical(directory) and name:
            return OWNER_DOCKER_SANDBOX, name
    return OWNER_FOREIGN, point


class OwnerReader:
    """Resolves the nsids of the host's veths that no container's process explains."""

    def __init__(self, procfs: ProcfsReader) -> None:
        self.procfs = procfs
        self._prefix = str(procfs.root).rstrip("/") + "/"
        # Mount points found last time a mount table was read, and the processes that held
        # what no mount did at the last look: tried before any mount table is read again.
        self._mounted: list[_Candidate] = []
        self._held: list[_Candidate] = []
        # (pid, start time, comm) -> netns inode, for the processes seen at the last look.
        self._process_netns: dict[tuple[int, int, str], int] = {}

    def resolve(
        self,
        sock: RtnlSocket,
        wanted: set[int],
        scan: ProcessScan,
        known_inodes: set[int],
    ) -> tuple[NamespaceOwner, ...]:
        """An owner for every nsid in wanted: docker_sandbox or foreign when found, unknown
        when a reading that might have found it failed, none when nothing holds it that the
        host's mount tables and processes show."""
        owners: dict[int, NamespaceOwner] = {}
        incomplete: list[str] = []
        self._match(sock, [*self._mounted, *self._held], wanted, owners, known_inodes)
        if wanted - owners.keys():
            self._mounted = list(self._mount_candidates(scan, incomplete))
            self._match(sock, self._mounted, wanted, owners, known_inodes)
        if wanted - owners.keys():
            found = {o.inode for o in owners.values() if o.inode is not None} | known_inodes
            held = self._process_candidates(scan, found, incomplete)
            self._held = self._match(sock, held, wanted, owners)
        for nsid in wanted - owners.keys():
            if incomplete:
                owners[nsid] = NamespaceOwner(nsid, None, OWNER_UNKNOWN, incomplete[0])
            else:
                owners[nsid] = NamespaceOwner(nsid, None, OWNER_NONE, "")
        return tuple(owners[nsid] for nsid in sorted(owners))

    def _match(
        self,
        sock: RtnlSocket,
        candidates: Iterable[_Candidate],
        wanted: set[int],
        owners: dict[int, NamespaceOwner],
        known_inodes: Collection[int] = (),
    ) -> list[_Candidate]:
        """Open each candidate, ask the nsids of all in one batch, keep the wanted ones (and
        return the candidates that were). A candidate mounted on a namespace a container's
        process is in (known_inodes) has that container's nsid, which is never wanted: not
        opened, as dockerd's mount of each of 250 containers' sandboxes would be (an open and
        a netlink question each) whenever one new namespace is looked up."""
        opened: list[tuple[_Candidate, int]] = []
        try:
            for candidate in candidates:
                if candidate.inode in known_inodes:
                    continue
                try:
                    fd = os.open(candidate.path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    continue  # unmounted or exited since it was listed: not this one
                if os.fstat(fd).st_ino != candidate.inode:
                    # Unmounted since (dockerd leaves the empty file it mounted on behind, and
                    # the kernel refuses a plain file with EINVAL), or now another namespace.
                    os.close(fd)
                    continue
                opened.append((candidate, fd))
            if not opened:
                return []
            nsids = sock.nsids_of([fd for _, fd in opened])
        finally:
            for _, fd in opened:
                os.close(fd)
        matched = []
        for (candidate, _), nsid in zip(opened, nsids, strict=True):
            if nsid in wanted and nsid not in owners:
                owners[nsid] = NamespaceOwner(nsid, candidate.inode, candidate.kind, candidate.name)
                matched.append(candidate)
        return matched

    def _mount_candidates(self, scan: ProcessScan, incomplete: list[str]) -> Iterator[_Candidate]:
        """The nsfs mounts in the mount namespaces of PID 1 and of each dockerd, once per
        mount namespace."""
        dockerds = [d.pid for d in scan.daemons if d.name == "dockerd"]
        netns_dirs = [exec_root(self.procfs.cmdline(pid)) + "/netns" for pid in dockerds]
        seen: set[str] = set()
        for pid in (1, *dockerds):
            try:
                mnt = os.readlink(f"{self._prefix}{pid}/ns/mnt")
                if mnt in seen:
                    continue
                seen.add(mnt)
                text = Path(f"{self._prefix}{pid}/mountinfo").read_text(errors="replace")
            except PermissionError:
                incomplete.append(f"{self._prefix}{pid}/mountinfo refused: needs CAP_SYS_PTRACE")
                continue
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise
                incomplete.append(f"process {pid} exited while its mounts were read")
                continue
            for mount in parse_nsfs_mounts(text):
                kind, name = classify_mount(mount.mount_point, netns_dirs)
                yield _Candidate(
                    f"{self._prefix}{pid}/root{mount.mount_point}", mount.inode, kind, name
                )

    def _process_candidates(
        self, scan: ProcessScan, found: set[int], incomplete: list[str]
    ) -> list[_Candidate]:
        """One process per namespace no mount or container explains, the oldest in it."""
        netns: dict[tuple[int, int, str], int] = {}
        holders: dict[int, tuple[int, int, str]] = {}
        for process in sorted(scan.table, key=lambda p: (p.start_ticks, p.pid)):
            identity = (process.pid, process.start_ticks, process.comm)
            inode = self._process_netns.get(identity)
            if inode is None:
                try:
                    target = os.readlink(f"{self._prefix}{process.pid}/ns/net")
                except PermissionError:
                    incomplete.append("a process's /proc/PID/ns/net refused: needs CAP_SYS_PTRACE")
                    continue
                except OSError as exc:
                    if exc.errno not in _GONE:
                        raise
                    continue  # exited since the scan: it holds nothing now
                if (inode := namespace_inode(target, "net")) is None:
                    continue
            netns[identity] = inode
            if inode not in found:
                holders.setdefault(inode, identity)
        self._process_netns = netns
        return [
            _Candidate(f"{self._prefix}{pid}/ns/net", inode, OWNER_FOREIGN, f"process:{comm}")
            for inode, (pid, _, comm) in holders.items()
        ]
