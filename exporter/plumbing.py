"""Pure joins between what the readers saw. No I/O: recorded facts drive these in unit tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.facts import (
    CONTAINER_STATES,
    EngineFacts,
    NamespaceLink,
    ProcessFacts,
    ShimFacts,
)

# The containerd namespace Docker runs its containers in; shims of other namespaces (a
# Kubernetes node's "k8s.io", nerdctl's "default") are not Docker's to judge.
DOCKER_RUNTIME_NAMESPACE = "moby"


@dataclass(frozen=True)
class Inventory:
    """The Engine API's last good container list and when it was taken."""

    engine: EngineFacts
    taken_at: float


@dataclass(frozen=True)
class ShimVerdict:
    shim: ShimFacts
    container: str
    # None when the inventory cannot tell: it was never taken, or predates the shim.
    orphaned: bool | None


@dataclass(frozen=True)
class ContainerProcesses:
    """A container's processes as /proc shows them, named from the Engine API when it can be."""

    container: str
    container_id: str
    shim: ShimFacts
    shared_with_host: tuple[tuple[str, bool], ...]


def display_name(container_id: str, names: Mapping[str, str]) -> str:
    """The container's name; its short id while the Engine API has not told us the name."""
    return names.get(container_id) or container_id[:12]


def shared_with_host(
    container: tuple[NamespaceLink, ...], host: tuple[NamespaceLink, ...]
) -> tuple[tuple[str, bool], ...]:
    """Per namespace kind both sides could read: is it the host's own namespace?"""
    host_inodes = {link.kind: link.inode for link in host}
    return tuple(
        (link.kind, host_inodes[link.kind] == link.inode)
        for link in container
        if link.kind in host_inodes
    )


def docker_shims(procs: ProcessFacts) -> tuple[ShimFacts, ...]:
    return tuple(s for s in procs.shims if s.runtime_namespace in ("", DOCKER_RUNTIME_NAMESPACE))


def shim_verdicts(procs: ProcessFacts, inventory: Inventory | None) -> tuple[ShimVerdict, ...]:
    """Each Docker shim with its container's name and whether it is orphaned.

    A shim is orphaned when an inventory taken after the shim started does not list its
    container. The two readers sample at different moments, so a shim newer than the inventory
    is left undecided rather than called orphaned for one interval.
    """
    names = {c.id: c.name for c in inventory.engine.containers} if inventory else {}
    verdicts = []
    for shim in docker_shims(procs):
        orphaned: bool | None = None
        if inventory is not None and shim.shim_start_time < inventory.taken_at:
            orphaned = shim.container_id not in names
        verdicts.append(ShimVerdict(shim, display_name(shim.container_id, names), orphaned))
    return tuple(verdicts)


def container_processes(
    procs: ProcessFacts, inventory: Inventory | None
) -> tuple[ContainerProcesses, ...]:
    """Per container with a running PID 1: its processes and namespaces.

    While the inventory predates a new container its series wait one interval rather than
    appear under the short id and then change label to the name.
    """
    known = {c.id for c in inventory.engine.containers} if inventory else set()
    return tuple(
        ContainerProcesses(
            container=v.container,
            container_id=v.shim.container_id,
            shim=v.shim,
            shared_with_host=shared_with_host(v.shim.namespaces, procs.host_namespaces),
        )
        for v in shim_verdicts(procs, inventory)
        if v.shim.pid1 is not None
        and (inventory is None or v.shim.container_id in known or v.orphaned)
    )


def containers_by_state(engine: EngineFacts) -> dict[str, int]:
    counts = Counter(c.state for c in engine.containers)
    return {state: counts.get(state, 0) for state in (*CONTAINER_STATES, *sorted(counts))}
