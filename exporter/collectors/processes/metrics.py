"""The processes collector's metric families and writer."""

from __future__ import annotations

from itertools import repeat
from operator import attrgetter

from exporter.collectors.containers.judge import display_name, inventory
from exporter.collectors.processes.facts import NAME, ProcessCounters, ProcessFacts, ShimFacts
from exporter.collectors.processes.judge import (
    docker_shims,
    host_namespace_inodes,
    pid1_shown,
    shared_with_host_inodes,
    shim_orphaned,
)
from exporter.metrics import Families, declare
from exporter.selfmetrics import PRIVILEGE_MISSING
from exporter.snapshot import Snapshot

PID1_INFO = declare(
    "container_pid1_info",
    "gauge",
    "The container's PID 1 as the host sees it, and the containerd shim holding it; 1.",
    ("container", "host_pid", "shim_pid"),
    collector=NAME,
)
PID1_START = declare(
    "container_pid1_start_time_seconds",
    "gauge",
    "When the container's PID 1 started, as Unix time (changes when the container restarts).",
    ("container",),
    collector=NAME,
)
NAMESPACE_INFO = declare(
    "container_namespace_info",
    "gauge",
    "A namespace of the container's PID 1 and its inode, as /proc/PID/ns names it; 1.",
    ("container", "namespace", "inode"),
    collector=NAME,
)
SHARED_WITH_HOST = declare(
    "container_namespace_shared_with_host",
    "gauge",
    "1 when the container's PID 1 is in the host's own namespace of this kind "
    "(--pid=host, --network=host, --ipc=host, ...; user is shared unless userns-remap is on).",
    ("container", "namespace"),
    collector=NAME,
)
UNREADABLE = declare(
    "container_namespaces_unreadable",
    "gauge",
    "Namespaces of the container's PID 1 the exporter may not read (needs CAP_SYS_PTRACE).",
    ("container",),
    collector=NAME,
)
PROCESSES = declare(
    "container_processes",
    "gauge",
    "Processes descended from the container's shim: PID 1, its children and exec sessions.",
    ("container",),
    collector=NAME,
)
ZOMBIES = declare(
    "container_zombie_processes",
    "gauge",
    "Zombie processes (state Z: exited, not yet reaped by their parent) in the container.",
    ("container",),
    collector=NAME,
)
SHIM_INFO = declare(
    "shim_info",
    "gauge",
    "A containerd shim in Docker's containerd namespace and the container id it holds; 1.",
    ("shim_pid", "container_id", "container"),
    collector=NAME,
)
SHIM_ORPHANED = declare(
    "shim_orphaned",
    "gauge",
    "1 when the shim's container is not listed by the Engine API any more (judged only "
    "against a container list taken after the shim started).",
    ("shim_pid", "container_id"),
    collector=NAME,
)
DAEMON_PROCESSES = declare(
    "daemon_processes",
    "gauge",
    "dockerd and containerd processes running on the host (0 means the daemon is down).",
    ("process",),
    collector=NAME,
)
DAEMON_START = declare(
    "daemon_process_start_time_seconds",
    "gauge",
    "When a dockerd or containerd process started, as Unix time.",
    ("process", "pid"),
    collector=NAME,
)
PROCFS_PROCESSES = declare(
    "procfs_processes",
    "gauge",
    "Processes in the host's /proc at the last sample.",
    (),
    collector=NAME,
)

DAEMONS = ("dockerd", "containerd")


def write(snapshot: Snapshot, out: Families) -> None:
    procs = snapshot.current(NAME, ProcessFacts)
    if procs is None:
        return
    known = inventory(snapshot)
    # A block per shim, with its container's series when that runs: after one container
    # changed, only its lines are formatted again (~20 a container, 5000 at 250 containers).
    # Its key: the source's shim (the same object while unchanged), the name the container list
    # gives its container (None: not listed) and what all blocks share. The keys are made in C
    # (map, zip), as they are made again for every shim after every container start or removal;
    # the verdicts are judged in the block, for a shim that changed.
    shims = docker_shims(procs)
    names = known.names if known is not None else {}
    listed = map(names.get, map(attrgetter("container_id"), shims))
    host = frozenset(host_namespace_inodes(procs.host_namespaces).items())
    out.blocks_of(list(zip(shims, listed, repeat((host, known is not None)))), _shim_series)

    if any(shim.unreadable_namespaces for shim in procs.shims):
        out.add(PRIVILEGE_MISSING, 1, NAME, "CAP_SYS_PTRACE")

    for daemon in DAEMONS:
        out.add(DAEMON_PROCESSES, sum(d.name == daemon for d in procs.daemons), daemon)
    for d in procs.daemons:
        out.add(DAEMON_START, d.start_time, d.name, str(d.pid))


def write_counters(snapshot: Snapshot, out: Families) -> None:
    """What the scan counted: re-run when that moves, while write waits for the facts."""
    counted = snapshot.counters(NAME, ProcessCounters)
    if counted is not None:
        out.add(PROCFS_PROCESSES, counted.processes_scanned)


def _shim_series(
    key: tuple[ShimFacts, str | None, tuple[frozenset[tuple[str, int]], bool]], out: Families
) -> None:
    """A shim's series, and its container's when it runs. key: the shim, its container's name
    in the container list (None: not in it), and the host's namespace inodes by kind with
    whether there is a container list at all."""
    shim, name, (host, has_list) = key
    container = name or display_name(shim.container_id, {})
    if pid1_shown(shim, (name is not None) if has_list else None):
        out.add(PID1_INFO, 1, container, str(shim.pid1), str(shim.shim_pid))
        if shim.pid1_start_time is not None:
            out.add(PID1_START, shim.pid1_start_time, container)
        for link in shim.namespaces:
            out.add(NAMESPACE_INFO, 1, container, link.kind, str(link.inode))
        for kind, shared in shared_with_host_inodes(dict(host), shim.namespaces):
            out.add(SHARED_WITH_HOST, int(shared), container, kind)
        out.add(UNREADABLE, len(shim.unreadable_namespaces), container)
        out.add(PROCESSES, shim.processes, container)
        out.add(ZOMBIES, shim.zombies, container)
    pid, cid = str(shim.shim_pid), shim.container_id
    out.add(SHIM_INFO, 1, pid, cid[:12], container)
    orphaned = shim_orphaned(shim)
    if orphaned is not None:
        out.add(SHIM_ORPHANED, int(orphaned), pid, cid[:12])
