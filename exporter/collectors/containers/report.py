"""The containers collector's `inspect` section."""

from __future__ import annotations

from exporter.collectors.containers.facts import NAME
from exporter.readers.docker_api import EngineFacts
from exporter.report import table, when
from exporter.snapshot import Snapshot


def sections(snapshot: Snapshot) -> list[str]:
    engine = snapshot.current(NAME, EngineFacts)
    if engine is None:
        return []
    return [
        table(
            "CONTAINERS",
            ("CONTAINER", "ID", "STATE", "IMAGE", "NETWORK MODE", "CREATED"),
            (
                (c.name, c.short_id, c.state, c.image, c.network_mode, when(c.created))
                for c in engine.containers
            ),
        )
    ]
