"""What the processes collector observed: each containerd shim, its container's PID 1 and
namespaces, and the daemons, from /proc alone."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.readers.procfs import DaemonProcess, NamespaceLink

NAME = "processes"  # the collector's name: --collector.processes, its series' collector label


@dataclass(frozen=True)
class ShimFacts:
    """A containerd shim and the container it holds, read from /proc alone.

    The shim is reparented to PID 1 when containerd starts it, so the link to its container is its
    `-id` argument and being the parent of the container's PID 1, never a process-tree ancestry
    from dockerd.
    """

    shim_pid: int
    shim_start_time: float
    container_id: str
    runtime_namespace: str
    pid1: int | None
    pid1_start_time: float | None
    namespaces: tuple[NamespaceLink, ...]
    unreadable_namespaces: tuple[str, ...]
    processes: int
    zombies: int
    # Does Docker's container list, current as of after the shim started, list its container?
    # None when there is no such list: never listed, or only from before the shim.
    listed: bool | None = None

    def __hash__(self) -> int:
        # Hashed on every write as part of a block's key (metrics.Families.blocks_of): by the
        # container's id alone (a str keeps its hash), not the namespaces' ten records. Equal
        # shims have equal ids, so the hash stays consistent with the generated __eq__.
        return hash(self.container_id)


@dataclass(frozen=True)
class ProcessFacts:
    """What one run saw of /proc."""

    host_namespaces: tuple[NamespaceLink, ...]
    shims: tuple[ShimFacts, ...]
    daemons: tuple[DaemonProcess, ...]


@dataclass(frozen=True)
class ProcessCounters:
    """What one run counted in /proc, kept apart from ProcessFacts (CollectorState.counters):
    any process started or ended anywhere on the host moves it (runc and a shim's helpers do,
    seconds after a container starts or stops), and that must not re-run the shims' writer."""

    processes_scanned: int
