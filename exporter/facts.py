"""Immutable facts the readers return. Plain data: no I/O, no behaviour beyond small derivations.

Facts are what one collector run observed; joins (plumbing.py) and rendering (metrics.py) are pure
functions of them, which is what lets the recorded fixtures in tests/ drive everything above the
readers without root or an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

# The namespaces a container can have of its own, in the order `lsns` lists them.
NAMESPACE_KINDS: tuple[str, ...] = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")

# The states the Engine API reports for a container; every one is exported, zero when empty,
# so a dashboard does not lose a line when the last container leaves a state.
CONTAINER_STATES: tuple[str, ...] = (
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
)


@dataclass(frozen=True)
class ContainerRecord:
    """One container as the Engine API's list endpoint reports it (no inspect needed)."""

    id: str
    name: str
    image: str
    image_id: str
    state: str
    network_mode: str
    created: float

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class EngineComponent:
    name: str
    version: str


@dataclass(frozen=True)
class EngineFacts:
    """What one run of the Docker API reader saw."""

    containers: tuple[ContainerRecord, ...]
    components: tuple[EngineComponent, ...]
    api_version: str


@dataclass(frozen=True)
class NamespaceLink:
    """A namespace as `/proc/PID/ns/<kind>` names it: kind and inode."""

    kind: str
    inode: int


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


@dataclass(frozen=True)
class DaemonProcess:
    """dockerd or containerd as /proc shows it."""

    name: str
    pid: int
    start_time: float


@dataclass(frozen=True)
class ProcessFacts:
    """What one run of the /proc reader saw."""

    host_namespaces: tuple[NamespaceLink, ...]
    shims: tuple[ShimFacts, ...]
    daemons: tuple[DaemonProcess, ...]
    processes_scanned: int
