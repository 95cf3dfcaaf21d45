"""The processes collector's verdicts: each shim's container and whether it outlived it, and
which of the host's namespaces a container shares. Pure: recorded facts drive these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from exporter.collectors.containers.judge import Inventory, display_name
from exporter.collectors.processes.facts import ProcessFacts, ShimFacts
from exporter.readers.procfs import DOCKER_RUNTIME_NAMESPACE, NamespaceLink


class ShimVerdict(NamedTuple):
    """A shim's container and whether it outlived it. A NamedTuple, not a frozen dataclass: a
    processes write makes one per shim after every container start or removal (see
    network.judge.VethView)."""

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


def shared_with_host(
    container: tuple[NamespaceLink, ...], host: tuple[NamespaceLink, ...]
) -> tuple[tuple[str, bool], ...]:
    """Per namespace kind both sides could read: is it the host's own namespace?"""
    return shared_with_host_inodes(host_namespace_inodes(host), container)


def shared_with_host_inodes(
    host_inodes: Mapping[str, int], container: tuple[NamespaceLink, ...]
) -> tuple[tuple[str, bool], ...]:
    """shared_with_host, against the host's inodes by kind (host_namespace_inodes)."""
    return tuple(
        (link.kind, host_inodes[link.kind] == link.inode)
        for link in container
        if link.kind in host_inodes
    )


def docker_shims(procs: ProcessFacts) -> tuple[ShimFacts, ...]:
    return tuple(s for s in procs.shims if s.runtime_namespace in ("", DOCKER_RUNTIME_NAMESPACE))


def shim_verdicts(procs: ProcessFacts, inventory: Inventory | None) -> tuple[ShimVerdict, ...]:
    """Each Docker shim with its container's name and whether it is orphaned.

    A shim is orphaned when a container list current as of after the shim started does not
    list its container (the source holds each shim against such a list: ShimFacts.listed).
    A shim newer than every list is left undecided rather than called orphaned for one
    interval.
    """
    names = inventory.names if inventory else {}
    return tuple(
        ShimVerdict(
            shim,
            display_name(shim.container_id, names),
            shim_orphaned(shim),
        )
        for shim in docker_shims(procs)
    )


def containers_running(
    inventory: Inventory | None, verdicts: tuple[ShimVerdict, ...]
) -> list[ShimVerdict]:
    """The shims (verdicts: shim_verdicts(procs, inventory)) whose container runs
    (container_running)."""
    return [v for v in verdicts if container_running(inventory, v)]


def container_running(inventory: Inventory | None, verdict: ShimVerdict) -> bool:
    """Does the shim's container have a running PID 1, named by the container list? While the
    list does not name a new container yet, its series wait one interval rather than appear
    under the short id and then change label to the name; an orphaned shim's container is
    shown under its id."""
    listed = None if inventory is None else verdict.shim.container_id in inventory.names
    return pid1_shown(verdict.shim, listed)


def pid1_shown(shim: ShimFacts, listed: bool | None) -> bool:
    """container_running, for a shim whose container the container list names or not (listed;
    None: there is no list)."""
    if shim.pid1 is None:
        return False
    return listed is not False or bool(shim_orphaned(shim))


def shim_orphaned(shim: ShimFacts) -> bool | None:
    """ShimVerdict.orphaned: the shim's container not listed by a list current as of after the
    shim started; None when there is no such list."""
    return None if shim.listed is None else not shim.listed


def container_processes(
    procs: ProcessFacts,
    inventory: Inventory | None,
    verdicts: tuple[ShimVerdict, ...] | None = None,
) -> tuple[ContainerProcesses, ...]:
    """Per container with a running PID 1 (containers_running): its processes and namespaces.
    verdicts: shim_verdicts(procs, inventory), when the caller has them already."""
    host_inodes = host_namespace_inodes(procs.host_namespaces)
    if verdicts is None:
        verdicts = shim_verdicts(procs, inventory)
    return tuple(
        ContainerProcesses(
            container=v.container,
            container_id=v.shim.container_id,
            shim=v.shim,
            shared_with_host=shared_with_host_inodes(host_inodes, v.shim.namespaces),
        )
        for v in containers_running(inventory, verdicts)
    )


def host_namespace_inodes(host: tuple[NamespaceLink, ...]) -> dict[str, int]:
    """The host's namespace inodes by kind."""
    return {link.kind: link.inode for link in host}
