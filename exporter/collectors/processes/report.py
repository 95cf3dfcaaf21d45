"""The processes collector's `inspect` sections: PID 1s, namespaces, shims, daemons."""

from __future__ import annotations

from exporter.collectors.containers.facts import NAME as CONTAINERS
from exporter.collectors.containers.judge import inventory
from exporter.collectors.processes.facts import NAME, ProcessFacts
from exporter.collectors.processes.judge import container_processes, shim_verdicts
from exporter.readers.docker_api import EngineFacts
from exporter.readers.procfs import NAMESPACE_KINDS, NamespaceLink
from exporter.report import table, when
from exporter.snapshot import Snapshot


def sections(snapshot: Snapshot) -> list[str]:
    procs = snapshot.current(NAME, ProcessFacts)
    engine = snapshot.current(CONTAINERS, EngineFacts)
    sections: list[str] = []
    if procs is not None:
        known = inventory(snapshot)
        views = sorted(container_processes(procs, known), key=lambda v: v.container)
        sections.append(
            table(
                "CONTAINER PROCESSES",
                ("CONTAINER", "HOST PID", "SHIM PID", "PROCESSES", "ZOMBIES", "SHARED WITH HOST"),
                (
                    (
                        v.container,
                        v.shim.pid1,
                        v.shim.shim_pid,
                        v.shim.processes,
                        v.shim.zombies,
                        ",".join(k for k, shared in v.shared_with_host if shared) or "-",
                    )
                    for v in views
                ),
            )
        )
        sections.append(
            table(
                "NAMESPACES (inode; * = the host's own)",
                ("CONTAINER", *NAMESPACE_KINDS),
                (
                    (
                        v.container,
                        *(
                            _namespace_cell(
                                v.shim.namespaces,
                                dict(v.shared_with_host),
                                kind,
                                v.shim.unreadable_namespaces,
                            )
                            for kind in NAMESPACE_KINDS
                        ),
                    )
                    for v in views
                ),
            )
        )
        sections.append(
            table(
                "SHIMS",
                ("SHIM PID", "CONTAINER ID", "CONTAINER", "ORPHANED", "STARTED"),
                (
                    (
                        v.shim.shim_pid,
                        v.shim.container_id[:12],
                        v.container,
                        {None: "unknown", True: "YES", False: "no"}[v.orphaned],
                        when(v.shim.shim_start_time),
                    )
                    for v in sorted(shim_verdicts(procs, known), key=lambda v: v.container)
                ),
            )
        )
        versions = {c.name: c.version for c in engine.components} if engine else {}
        sections.append(
            table(
                "DAEMONS",
                ("PROCESS", "PID", "STARTED", "VERSION"),
                (
                    (
                        d.name,
                        d.pid,
                        when(d.start_time),
                        versions.get("Engine" if d.name == "dockerd" else d.name, "-"),
                    )
                    for d in procs.daemons
                ),
            )
        )
    return sections


def _namespace_cell(
    links: tuple[NamespaceLink, ...], shared: dict[str, bool], kind: str, refused: tuple[str, ...]
) -> str:
    if kind in refused:
        return "denied"
    inode = next((link.inode for link in links if link.kind == kind), None)
    if inode is None:
        return "-"
    return f"{inode}{'*' if shared.get(kind) else ''}"
